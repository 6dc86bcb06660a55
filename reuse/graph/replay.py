"""Replaying recorded calls of a base graph on new layers: a call's arguments with tensors in place of
:class:`~reuse.graph.arch.Ref` and Keras' serialised constants rebuilt, and errors that name the layer and the
tensor it could not take."""

from __future__ import annotations

from typing import Any

from reuse.errors import IncompatibleShapes, InvalidInput
from reuse.graph.arch import Architecture, Call, Ref
from reuse.text import first_line


def fmt_shape(shape: Any) -> str:
    """A shape as messages print it."""
    return str(tuple(shape)) if shape is not None else "unknown"


def producer(arch: Architecture, r: Ref) -> str:
    """The base input's name, or the path of the layer or operation whose call made ``r``."""
    if r.input:
        return r.input
    return next(c.layer for c in arch.calls if c.key == r.call)


def substituted(obj: Any, tensors: dict[Ref, Any], sub: dict[Ref, Ref]) -> Any:
    """A call's recorded arguments with tensors in place of Refs and constants rebuilt: a tensor an
    operation captured (``x + ops.arange(8)``), a slice or ``...`` of an index (``x[..., ::-1]``)."""
    if isinstance(obj, Ref):
        return tensors[sub.get(obj, obj)]
    if isinstance(obj, dict):
        if isinstance(obj.get("class_name"), str) and "config" in obj:
            return _constant(obj)
        return {k: substituted(v, tensors, sub) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substituted(v, tensors, sub) for v in obj]
    if isinstance(obj, tuple):
        return tuple(substituted(v, tensors, sub) for v in obj)
    return obj


def _constant(obj: dict[str, Any]) -> Any:
    """A constant argument Keras serialised (``__tensor__``, ``__numpy__``, ``__slice__``, ...), rebuilt by
    Keras in safe mode once the classes it names are checked (:func:`reuse.trust.check_config`)."""
    import keras

    from reuse.trust import check_config

    if _holds_ref(obj):  # a tensor of the graph inside a serialised object: nothing we can replay
        raise InvalidInput(f"an argument of type {obj['class_name']} holds a tensor of the graph; not "
                           "supported")
    check_config(obj, "a call's argument", model=False, entry=False)
    try:
        return keras.saving.deserialize_keras_object(obj, safe_mode=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"cannot rebuild a constant argument ({obj['class_name']}): "
                           f"{first_line(exc)}") from exc


def _holds_ref(obj: Any) -> bool:
    if isinstance(obj, Ref):
        return True
    if isinstance(obj, dict):
        return any(_holds_ref(v) for v in obj.values())
    return isinstance(obj, (list, tuple)) and any(_holds_ref(v) for v in obj)


def _describe_source(arch: Architecture, r: Ref, names: dict[str, str]) -> str:
    if r.input:
        return f"the input {r.input}"
    layer = producer(arch, r)
    return f"layer {names.get(layer, layer)}"


def run_call(arch: Architecture, call: Call, layer: Any, tensors: dict[Ref, Any], sub: dict[Ref, Ref],
             names: dict[str, str] | None = None) -> Any:
    """Call ``layer`` (a layer or operation) as ``call`` recorded, on the tensors made so far (``sub`` maps a
    skipped layer's output to the tensor it passed through); record its outputs in ``tensors``.

    Raises:
        IncompatibleShapes: the layer cannot take those tensors (the message names it and the source).
    """
    args = substituted(call.args, tensors, sub)
    kwargs = substituted(call.kwargs, tensors, sub)
    try:
        out = layer(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        node = arch.node(call.layer)
        first = sub.get(call.inputs[0], call.inputs[0]) if call.inputs else None
        if first is not None:
            t = tensors[first]
            source = _describe_source(arch, first, names or {})
            raise IncompatibleShapes(f"layer {node.name} ({node.class_name}) cannot take the output of "
                                     f"{source}, of shape {fmt_shape(t.shape)}: {first_line(exc)}") from exc
        raise IncompatibleShapes(f"layer {node.name} ({node.class_name}) cannot be called: "
                                 f"{first_line(exc)}") from exc
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    for i, t in enumerate(outs):
        tensors[Ref(call=call.key, index=i)] = t
    return outs
