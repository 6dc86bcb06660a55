"""Data sets for training, evaluation and prediction: files (.npz, .csv, .h5) and built-in sets.

A data spec is a path (``train.npz``, ``data.csv``, ``set.h5``), ``builtin:NAME[?key=value&...]``
(see :mod:`reuse.data.builtin`) or ``images:DIR?size=H,W`` (see :mod:`reuse.data.images`). Everything is
loaded into memory as NumPy arrays and checked before any work starts (:mod:`reuse.data.checks`).
"""

from __future__ import annotations

from reuse.data.checks import check_for_model, output_kind
from reuse.data.dataset import Dataset, split_stratified, split_validation
from reuse.data.load import load_data

__all__ = ["Dataset", "check_for_model", "load_data", "output_kind", "split_stratified", "split_validation"]
