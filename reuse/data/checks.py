"""Checks of a data set against the model it is used with, before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reuse.data.dataset import Dataset
from reuse.data.rows import RowSource, fingerprint, is_lazy, read_range
from reuse.errors import InvalidInput

# A row source whose checked array takes at most this share of what the memory budget leaves is read
# into memory when it is checked (one read, then every pass runs in memory); a larger one stays a source
# and each batch is checked as a pass reads it (:class:`CheckedRows`).
IN_MEMORY_SHARE = 0.25


@dataclass(frozen=True)
class OutputKind:
    """What a model's output means, read from its last layer.

    ``kind`` is ``multiclass`` (k > 1 units: softmax probabilities, or logits when linear), ``binary``
    (one sigmoid unit) or ``regression`` (anything else, e.g. one linear unit).
    """

    kind: str
    units: int
    from_logits: bool = False


def last_activation(model: Any) -> str | None:
    """The activation of the model's last layer (looking into nested models), when it names one."""
    import keras

    layer = model.layers[-1]
    while hasattr(layer, "layers") and layer.layers:
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.Activation) or hasattr(layer, "activation"):
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
    act = last_activation(model)
    if act == "softmax":
        return OutputKind("multiclass", units)
    if act == "sigmoid" and units == 1:
        return OutputKind("binary", 1)
    if units > 1 and act in (None, "linear"):
        return OutputKind("multiclass", units, from_logits=True)
    return OutputKind("regression", units)


@dataclass(frozen=True)
class InputSpec:
    """One model input as data must fill it: its name, per-sample shape and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def integer(self) -> bool:
        return np.dtype(self.dtype).kind in "iu"


def input_specs(model: Any) -> list[InputSpec]:
    """The model's inputs in its order (name, per-sample shape, dtype)."""
    tensors = getattr(model, "inputs", None)
    if tensors:
        return [InputSpec(str(t.name), tuple(t.shape[1:]), _dtype_name(t.dtype)) for t in tensors]
    shape = model.input_shape
    if isinstance(shape, list):
        return [InputSpec(f"input_{i}", tuple(s[1:]), "float32") for i, s in enumerate(shape)]
    return [InputSpec("x", tuple(shape[1:]), "float32")]


def _dtype_name(dtype: Any) -> str:
    try:
        return np.dtype(str(dtype)).name
    except TypeError:
        return "float32"


def check_for_model(ds: Dataset, model: Any, *, kind: OutputKind | None = None,
                    require_labels: bool = True) -> Dataset:
    """Check ``ds`` fits ``model`` and return it ready to use (typed features, typed labels).

    A model with one input takes the single array ``x`` (or the one named array matching the input's
    name); a model with several inputs takes one array per input, matched by name (extra arrays are
    ignored), and the result's ``x`` maps the input names, in the model's order, to the arrays. Each
    array keeps its input's dtype: float inputs get float32 (or the input's float type), integer inputs
    (token ids) their integer type; floats with fractions are refused for integer inputs. Flat rows are
    reshaped to an input's shape when the value counts agree (a CSV row of 784 values for a (28, 28)
    input). A row source (:mod:`reuse.data.rows`) is read into memory here when its checked array fits
    :data:`IN_MEMORY_SHARE` of what the memory budget leaves; otherwise it stays a source whose batches are
    checked as they are read (:class:`CheckedRows`).

    Raises:
        InvalidInput: a missing input array, wrong feature count or shape, NaN or infinite values,
            fractions for an integer input, labels missing, not integers, or out of range for the output
            layer. The message names the data, the input (when there are several) and the problem.
    """
    src = ds.source
    ds = check_features(ds, input_specs(model), model.name)
    if ds.y is None:
        if require_labels:
            raise InvalidInput(f"{src}: has no labels")
        return ds
    kind = kind or output_kind(model)
    return replace(ds, y=_check_labels(ds, kind, model.name))


def check_features(ds: Dataset, specs: list[InputSpec], model_name: str) -> Dataset:
    """The feature part of :func:`check_for_model`, against input specs (e.g. a served signature's)."""
    if len(specs) == 1:
        x: Any = _check_input(ds.source, model_name, specs[0], _single_array(ds, specs[0], model_name), "")
    else:
        arrays = _match_inputs(ds, specs, model_name)
        x = {spec.name: _check_input(ds.source, model_name, spec, arrays[spec.name], f"input {spec.name!r}: ")
             for spec in specs}
    return replace(ds, x=x)


def model_inputs(ds: Dataset) -> Any:
    """A checked data set's features as the model takes them: one array, or a tuple in input order."""
    return tuple(ds.x.values()) if ds.named else ds.x


def _single_array(ds: Dataset, spec: InputSpec, model_name: str) -> np.ndarray:
    if not ds.named:
        return ds.x
    arrays = ds.arrays
    for name in (spec.name, "x"):
        if name in arrays:
            return arrays[name]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise InvalidInput(f"{ds.source}: model {model_name!r} takes one input, {spec.name!r}; the data "
                       f"has arrays {sorted(arrays)}: name one of them {spec.name!r} or 'x'")


def _match_inputs(ds: Dataset, specs: list[InputSpec], model_name: str) -> dict[str, np.ndarray]:
    names = [s.name for s in specs]
    if not ds.named:
        raise InvalidInput(f"{ds.source}: model {model_name!r} takes {len(specs)} inputs "
                           f"({', '.join(names)}); the data has one feature array: give one array per input, "
                           f"named after it (an .npz or .h5 with arrays {', '.join(names)} and y)")
    arrays = ds.arrays
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InvalidInput(f"{ds.source}: no array for input(s) {', '.join(repr(n) for n in missing)} "
                           f"of model {model_name!r} (inputs: {', '.join(names)}; arrays found: "
                           f"{', '.join(arrays)})")
    return {n: arrays[n] for n in names}


def _check_input(src: str, model_name: str, spec: InputSpec, x: Any, where: str) -> Any:
    if np.dtype(x.dtype).kind not in "biuf":
        raise InvalidInput(f"{src}: {where}features have type {np.dtype(x.dtype)}; expected numbers")
    want = spec.shape
    got = tuple(x.shape[1:])
    if not _shape_fits(got, want):
        known = all(d is not None for d in want)
        if not (known and int(np.prod(got, dtype=np.int64)) == int(np.prod(want, dtype=np.int64))):
            raise InvalidInput(
                f"{src}: {where}samples have shape {got} ({int(np.prod(got, dtype=np.int64))} values); model "
                f"{model_name!r} expects {_fmt(want)}")
    if is_lazy(x):
        if not _fits_in_memory(x, spec):
            return CheckedRows(x, spec, src, where)
        x = read_range(x, 0, len(x))
    return _checked_values(src, spec, x, where)


def _target_dtype(spec: InputSpec) -> np.dtype:
    if spec.integer:
        return np.dtype(spec.dtype)
    return np.dtype(spec.dtype) if np.dtype(spec.dtype).kind == "f" else np.dtype(np.float32)


def _fits_in_memory(x: Any, spec: InputSpec) -> bool:
    from reuse.memory import process_budget

    width = int(np.prod(x.shape[1:], dtype=np.int64)) * max(_target_dtype(spec).itemsize,
                                                            np.dtype(x.dtype).itemsize)
    return len(x) * width <= process_budget().available() * IN_MEMORY_SHARE


def _checked_values(src: str, spec: InputSpec, x: np.ndarray, where: str, rows: np.ndarray | None = None
                    ) -> np.ndarray:
    """``x`` reshaped to the input's shape, typed, and checked (finite; integers where the input takes
    them). ``rows``: the data set's row numbers of ``x``'s rows, for messages (default 0..)."""
    want = spec.shape
    if not _shape_fits(tuple(x.shape[1:]), want):
        x = x.reshape((x.shape[0], *want))
    if spec.integer:
        return _as_integers(src, spec, x, where)
    x = np.ascontiguousarray(x, dtype=_target_dtype(spec))
    bad = ~np.isfinite(x)
    if bad.any():
        bad_rows = np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))
        first = int(bad_rows[0] if rows is None else rows[bad_rows[0]])
        what = "NaN" if np.isnan(x).any() else "infinite"
        raise InvalidInput(f"{src}: {where}{int(bad.sum())} {what} feature value(s) in {len(bad_rows)} "
                           f"sample(s) (first at row {first}); expected finite numbers")
    return x


class CheckedRows(RowSource):
    """A row source as a model input takes it: each batch read is reshaped, typed and checked like an
    array in memory (:func:`check_features`); a bad value stops the pass, naming its row."""

    def __init__(self, base: Any, spec: InputSpec, source: str, where: str) -> None:
        self.base, self.spec, self.src, self.where = base, spec, source, where
        shape = tuple(base.shape[1:])
        self.shape = (len(base), *(shape if _shape_fits(shape, spec.shape) else spec.shape))
        self.dtype = _target_dtype(spec)
        self.source = getattr(base, "source", source)

    def __len__(self) -> int:
        return len(self.base)

    def fingerprint(self) -> str:
        return f"{fingerprint(self.base)}\0{self.spec}"

    def read(self, index: np.ndarray) -> np.ndarray:
        return _checked_values(self.src, self.spec, self.base.read(index), self.where, rows=np.asarray(index))


def _as_integers(src: str, spec: InputSpec, x: np.ndarray, where: str) -> np.ndarray:
    """``x`` as the integer input's dtype; floats must be whole numbers, values must fit the type."""
    dtype = np.dtype(spec.dtype)
    label = where or f"input {spec.name!r}: "
    if x.dtype.kind == "f":
        bad = ~(np.isfinite(x) & (x == np.round(x)))
        if bad.any():
            raise InvalidInput(f"{src}: {label}takes integers ({dtype.name}, e.g. token ids); found e.g. "
                               f"{x[bad][:3].tolist()}")
    if x.size and x.dtype != dtype:
        info = np.iinfo(dtype)
        lo, hi = x.min(), x.max()
        if lo < info.min or hi > info.max:
            raise InvalidInput(f"{src}: {label}values {lo}..{hi} do not fit {dtype.name} "
                               f"({info.min}..{info.max})")
    return np.ascontiguousarray(x, dtype=dtype)


def _shape_fits(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(
        w is None or int(w) == int(g) for g, w in zip(got, want, strict=True)
    )


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
        if ds.class_names is not None:
            # The indices are ours (labels mapped to 0..k-1); name the user's labels instead.
            names = list(ds.class_names)
            raise InvalidInput(
                f"{src}: labels {[names[i] for i in found][:10]} are out of range for model {model_name!r}, "
                f"whose output layer has {kind.units} unit(s): the data has {len(names)} classes "
                f"{names[:20]}, mapped to 0..{len(names) - 1} in sorted order; labels must be integers "
                f"0..{n_classes - 1} or class names, at most {n_classes} of them")
        hint = ""
        if not (y < 0).any() and len(np.unique(y)) <= n_classes:
            hint = " (to map the labels to 0..k-1 use relabel: --relabel, or ?relabel=1 for builtin sets)"
        raise InvalidInput(
            f"{src}: labels {found[:10]} are out of range for model {model_name!r}, whose output layer "
            f"has {kind.units} unit(s) (labels 0..{n_classes - 1}){hint}")
    if kind.kind == "binary":
        return y.astype(np.float32).reshape(-1, 1)
    return y.astype(np.int32)
