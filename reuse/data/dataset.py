"""A data set, its labels and its splits (:mod:`reuse.data.load` turns a data spec into one).

Labels are always in memory (one number, or one target row, per sample); features are arrays in memory
or row sources read a batch at a time (:mod:`reuse.data.rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reuse.data.rows import IndexedRows, is_lazy
from reuse.errors import InvalidInput

# One feature array, or several named ones (a model with several inputs), all with one row per sample;
# each an array in memory or a row source (reuse.data.rows.Rows).
Features = np.ndarray | Mapping[str, np.ndarray] | Any


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features ``x`` (one row per sample), optional labels ``y`` and where they came from.

    ``x`` is one array, or a mapping of names to arrays for a model with several inputs (a file's
    arrays named after the model's inputs: ``x_left``, ``x_right``); every array has one row per
    sample. ``class_names`` is set when labels were remapped to 0..k-1 (``class_names[i]`` is the
    original label of class ``i``); it is recorded with every model trained on the set. ``skipped``
    names the files a loader left out on request (``images:DIR?...&bad=skip``), each with why.
    """

    x: Features
    y: np.ndarray | None
    source: str
    class_names: tuple[str, ...] | None = None
    skipped: tuple[str, ...] = ()

    @property
    def named(self) -> bool:
        """Whether ``x`` holds several named arrays rather than one array."""
        return isinstance(self.x, Mapping)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The feature arrays by name (``{"x": x}`` for a single array)."""
        return dict(self.x) if isinstance(self.x, Mapping) else {"x": self.x}

    def __len__(self) -> int:
        return rows_of(self.x)

    @property
    def n_features(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        """The shape of one sample (per array name when ``x`` holds several arrays)."""
        if isinstance(self.x, Mapping):
            return {k: tuple(int(d) for d in a.shape[1:]) for k, a in self.x.items()}
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def lazy(self) -> bool:
        """Whether any feature array is a row source (read a batch at a time) rather than in memory."""
        return any(is_lazy(a) for a in self.arrays.values())

    def take(self, index: np.ndarray, source: str | None = None) -> Dataset:
        """The rows at ``index`` (a NumPy index array), as a new data set (every array alike); a row
        source stays one (a view of those rows), nothing is read."""
        def pick(a: Any) -> Any:
            return IndexedRows(a, index) if is_lazy(a) else a[index]

        x = ({k: pick(a) for k, a in self.x.items()} if isinstance(self.x, Mapping) else pick(self.x))
        return replace(self, x=x, y=None if self.y is None else self.y[index], source=source or self.source)


def rows_of(x: Features) -> int:
    """The number of rows (samples) of one array or of named arrays (the first one's)."""
    if isinstance(x, Mapping):
        return int(next(iter(x.values())).shape[0]) if x else 0
    return int(x.shape[0])


def features_from(source: str, arrays: dict[str, np.ndarray]) -> Features:
    """The features of a file's non-label arrays: the array itself when it is the only one, named
    ``x``; otherwise all of them by name (after checking that their row counts agree).

    Raises:
        InvalidInput: no feature array, or arrays with different row counts.
    """
    if not arrays:
        raise InvalidInput(f"{source}: no feature arrays (expected 'x', or one array per model input)")
    if list(arrays) == ["x"]:
        return arrays["x"]
    counts = {k: int(a.shape[0]) for k, a in arrays.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k!r} {n}" for k, n in counts.items())
        raise InvalidInput(f"{source}: feature arrays have different row counts ({listed}); expected one "
                           "row per sample in each")
    return dict(arrays)


def relabel(ds: Dataset, class_names: tuple[str, ...] | list[str] | None = None) -> Dataset:
    """Map labels to 0..k-1 explicitly and record the original labels as ``class_names``.

    Args:
        ds: a labelled data set.
        class_names: the order to use (e.g. a model's recorded class names); default: sorted labels.

    Raises:
        InvalidInput: the set has no labels, or a label is not among ``class_names``.
    """
    if ds.y is None:
        raise InvalidInput(f"{ds.source}: has no labels to remap")
    if ds.class_names is not None:
        originals = np.asarray(ds.class_names, dtype=object)[ds.y.astype(np.int64)].astype(str)
    else:
        originals = np.array([_label_text(v) for v in ds.y.tolist()], dtype=object).astype(str)
    if class_names is None:
        uniq = sorted(set(originals.tolist()), key=_natural_key)
        names = tuple(uniq)
    else:
        names = tuple(str(c) for c in class_names)
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(originals.tolist()) - set(lookup), key=_natural_key)
    if unknown:
        raise InvalidInput(
            f"{ds.source}: labels {unknown[:10]} are not among the classes {list(names)[:20]}; labels must "
            f"be integers 0..{len(names) - 1} or these class names")
    y = np.fromiter((lookup[v] for v in originals.tolist()), dtype=np.int64, count=len(originals))
    return replace(ds, y=y, class_names=names)


def _label_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _natural_key(s: str) -> tuple:
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def split_validation(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Hold out ``fraction`` of ``ds`` (a seeded random choice of rows) as validation data.

    Raises:
        InvalidInput: the fraction is not in (0, 1) or leaves either part empty.
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidInput(f"validation split {fraction} is out of range: expected a fraction in (0, 1)")
    n_val = int(round(len(ds) * fraction))
    if n_val < 1 or n_val >= len(ds):
        raise InvalidInput(
            f"{ds.source}: validation split {fraction} of {len(ds)} samples leaves {n_val} for validation "
            f"and {len(ds) - n_val} for training; both need at least one")
    order = np.random.default_rng(seed).permutation(len(ds))
    return (ds.take(np.sort(order[n_val:]), f"{ds.source} (train part)"),
            ds.take(np.sort(order[:n_val]), f"{ds.source} (validation split {fraction})"))


def split_stratified(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Hold out ``fraction`` of each class of ``ds`` (seeded) as validation data.

    Every class with at least two samples keeps at least one in each part; a class with a single sample
    stays in the training part. Rows keep their original order within each part.

    Raises:
        InvalidInput: no labels, labels that are not class numbers, a fraction outside (0, 1), or a
            split that leaves a part empty.
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidInput(f"validation split {fraction} is out of range: expected a fraction in (0, 1)")
    if ds.y is None or ds.y.ndim != 1 or ds.y.dtype.kind not in "iu":
        raise InvalidInput(f"{ds.source}: a stratified split needs one integer class label per sample")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(ds.y):
        idx = np.flatnonzero(ds.y == c)
        if len(idx) < 2:
            continue
        k = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 1)
        held.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    if len(val_idx) == 0:
        raise InvalidInput(f"{ds.source}: validation split {fraction} of {len(ds)} samples leaves none for "
                           "validation (every class has a single sample)")
    train_idx = np.setdiff1d(np.arange(len(ds)), val_idx)
    return (ds.take(train_idx, f"{ds.source} (train part)"),
            ds.take(val_idx, f"{ds.source} (stratified validation split {fraction})"))
