"""Checks of a data set against the model it is used with, before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reuse.data.dataset import Dataset
from reuse.errors import InvalidInput


@dataclass(frozen=True)
class OutputKind:
    """What a model's output means, read from its last layer.

    ``kind`` is ``multiclass`` (k > 1 units: softmax probabilities, or logits when linear), ``binary``
    (one sigmoid unit) or ``regression`` (anything else, e.g. one linear unit).
    """

    kind: str
    units: int
    from_logits: bool = False


def _last_activation(model: Any) -> str | None:
    layer = model.layers[-1]
    while hasattr(layer, "layers") and layer.layers:
        layer = layer.layers[-1]
    cls = type(layer).__name__
    if cls == "Softmax":
        return "softmax"
    if cls == "Activation" or hasattr(layer, "activation"):
        act = layer.get_config().get("activation")
        if isinstance(act, dict):
            act = act.get("config", {}).get("name") or act.get("class_name")
        return str(act) if act is not None else None
    return None


def output_kind(model: Any) -> OutputKind:
    """Classify ``model``'s output: multiclass (softmax or logits), binary (sigmoid) or regression.

    Raises:
        InvalidInput: the model has several outputs or an output that is not one vector per sample.
    """
    shape = model.output_shape
    if isinstance(shape, list):
        raise InvalidInput(f"model {model.name!r} has {len(shape)} outputs; expected exactly one")
    if len(shape) != 2 or shape[-1] is None:
        raise InvalidInput(f"model {model.name!r} has output shape {tuple(shape)}; expected (batch, units)")
    units = int(shape[-1])
    act = _last_activation(model)
    if act == "softmax":
        return OutputKind("multiclass", units)
    if act == "sigmoid" and units == 1:
        return OutputKind("binary", 1)
    if units > 1 and act in (None, "linear"):
        return OutputKind("multiclass", units, from_logits=True)
    return OutputKind("regression", units)


def check_for_model(ds: Dataset, model: Any, *, kind: OutputKind | None = None,
                    require_labels: bool = True) -> Dataset:
    """Check ``ds`` fits ``model`` and return it ready to use (float32 features, typed labels).

    Flat rows are reshaped to the model's input shape when the value counts agree (a CSV row of 784
    values for a (28, 28) input).

    Raises:
        InvalidInput: wrong feature count or shape, NaN or infinite values, labels missing, not
            integers, or out of range for the output layer. The message names the data and the problem.
    """
    src = ds.source
    in_shape = model.input_shape
    if isinstance(in_shape, list):
        raise InvalidInput(f"model {model.name!r} has {len(in_shape)} inputs; expected exactly one")
    want = tuple(in_shape[1:])
    x = ds.x
    if x.dtype.kind not in "biuf":
        raise InvalidInput(f"{src}: features have type {x.dtype}; expected numbers")
    got = tuple(x.shape[1:])
    if not _shape_fits(got, want):
        known = all(d is not None for d in want)
        if known and int(np.prod(got, dtype=np.int64)) == int(np.prod(want, dtype=np.int64)):
            x = x.reshape((x.shape[0], *want))
        else:
            raise InvalidInput(
                f"{src}: samples have shape {got} ({int(np.prod(got, dtype=np.int64))} values); model "
                f"{model.name!r} expects {_fmt(want)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))
        what = "NaN" if np.isnan(x).any() else "infinite"
        raise InvalidInput(f"{src}: {int(bad.sum())} {what} feature value(s) in {len(rows)} sample(s) "
                           f"(first at row {int(rows[0])}); expected finite numbers")
    ds = replace(ds, x=x)
    if ds.y is None:
        if require_labels:
            raise InvalidInput(f"{src}: has no labels")
        return ds
    kind = kind or output_kind(model)
    return replace(ds, y=_check_labels(ds, kind, model.name))


def _shape_fits(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w is None or int(w) == int(g) for g, w in zip(got, want, strict=True))


def _fmt(shape: tuple) -> str:
    dims = ", ".join("any" if d is None else str(d) for d in shape)
    return f"samples of shape ({dims}{',' if len(shape) == 1 else ''})"


def _check_labels(ds: Dataset, kind: OutputKind, model_name: str) -> np.ndarray:
    src, y = ds.source, ds.y
    assert y is not None
    if y.dtype.kind not in "biuf":
        raise InvalidInput(f"{src}: labels have type {y.dtype}; expected numbers (or relabel them)")
    if kind.kind == "regression":
        y = y.astype(np.float32).reshape(len(y), -1)
        if y.shape[1] != kind.units:
            raise InvalidInput(f"{src}: targets have {y.shape[1]} values per sample; model {model_name!r} "
                               f"outputs {kind.units}")
        if not np.all(np.isfinite(y)):
            raise InvalidInput(f"{src}: targets contain NaN or infinite values")
        return y
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise InvalidInput(f"{src}: labels have shape {y.shape}; expected one class index per sample")
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise InvalidInput(f"{src}: labels must be whole class indices; found e.g. "
                           f"{y[~(np.isfinite(y) & (y == np.round(y)))][:3].tolist()}")
    y = y.astype(np.int64)
    n_classes = 2 if kind.kind == "binary" else kind.units
    out = (y < 0) | (y >= n_classes)
    if out.any():
        found = sorted(set(y[out].tolist()))
        hint = ""
        if not (y < 0).any() and len(np.unique(y)) <= n_classes:
            hint = " (to map the labels to 0..k-1 use relabel: --relabel, or ?relabel=1 for builtin sets)"
        raise InvalidInput(
            f"{src}: labels {found[:10]} are out of range for model {model_name!r}, whose output layer "
            f"has {kind.units} unit(s) (labels 0..{n_classes - 1}){hint}")
    if kind.kind == "binary":
        return y.astype(np.float32).reshape(-1, 1)
    return y.astype(np.int32)
