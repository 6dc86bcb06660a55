"""Heads: the new layers put on top of reused ones.

:mod:`reuse.heads.spec` holds the specs (frozen dataclasses, no Keras), :mod:`reuse.heads.parse` parses
them from text (``gap,dense:64:relu``) or a JSON/YAML file, :mod:`reuse.heads.layers` builds their Keras
layers. The package exports what callers use.
"""

from __future__ import annotations

from reuse.heads.parse import MAX_HEAD_FILE_BYTES, head_from_dict, load_head_file, parse_head
from reuse.heads.spec import HeadSpec, LayerSpec

__all__ = ["MAX_HEAD_FILE_BYTES", "HeadSpec", "LayerSpec", "head_from_dict", "load_head_file", "parse_head"]
