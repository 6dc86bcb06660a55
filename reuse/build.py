"""New networks from the reused layers of a stored one, plus a new head.

The new network is an ``Input``, then fresh copies of the selected layers in the base's order (new layer
objects made from their configs, weights copied bit for bit; no layer object is shared with anything),
then the head. Only the architecture and the selected layers' weights are read from the base's file.

Rules (docs/building.md has the full text):

- The selected layers must form a chain: each takes one input, produced by the previous selected layer.
- Gap rule: an unselected layer between two selected ones is skipped if it is the identity at inference
  and holds no weights (Dropout, SpatialDropout*, GaussianNoise, GaussianDropout, AlphaDropout,
  ActivityRegularization); any other unselected layer there (Dense, BatchNormalization, Activation,
  Flatten, pooling, ...) makes the build fail, naming it and a wider scope that includes it.
- Layers before the first selected layer are left out; the new input has the shape the first selected
  layer received in the base (the base's input shape when the selection starts at the bottom), unless
  ``input_shape`` is given. Layers after the last selected one are left out (the head replaces them).
- Reused layers keep their base names and are frozen unless ``trainable`` selects them. A frozen
  BatchNormalization runs in inference mode (Keras 3 does this for ``trainable=False``), so its moving
  statistics stay as copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reuse.arch import ChainPlan, LayerNode, base_input_shape, new_layer, parse_architecture, plan_chain
from reuse.errors import IncompatibleShapes, InvalidInput, StoreCorrupt
from reuse.heads import HeadSpec, parse_head
from reuse.select import select_layers
from reuse.store import ModelStore

LINEAGE_FORMAT = 1


@dataclass(frozen=True)
class BuiltNetwork:
    """A built, uncompiled Keras model and the lineage to register with it."""

    model: Any
    lineage: dict[str, Any]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fmt(shape: Any) -> str:
    return str(tuple(shape)) if shape is not None else "unknown"


def _input_shape(value: Sequence[int | None] | None) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    shape = tuple(value)
    if not shape or any(d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 1) for d in shape):
        raise InvalidInput(f"invalid input shape {value!r}: expected positive integers (or None), e.g. (64,) "
                           "or (28, 28, 1), without the batch dimension")
    return shape


def _copy_weights(layer: Any, arrays: list[np.ndarray], node: LayerNode, base: str, got: Any) -> None:
    # Keras' legacy HDF5 order: trainable then non-trainable weights. The new layer has the base layer's
    # `trainable` flag (from its config), so both lists split the same way as when the base was saved.
    targets = list(layer.trainable_weights) + list(layer.non_trainable_weights)
    built = [tuple(v.shape) for v in targets]
    stored = [tuple(a.shape) for a in arrays]
    if len(targets) != len(arrays):
        raise StoreCorrupt(f"{base}: layer {node.name} has {len(arrays)} stored weights but a {node.class_name} "
                           f"built from its config has {len(targets)}")
    if built != stored:
        raise IncompatibleShapes(
            f"layer {node.name} ({node.class_name}) gets input of shape {_fmt(got)} here, which gives it weights "
            f"of shapes {built}, but its weights in {base} have shapes {stored}"
        )
    for var, arr in zip(targets, arrays, strict=True):
        var.assign(arr)


def _call(layer: Any, x: Any, what: str, source: str) -> Any:
    try:
        return layer(x)
    except (ValueError, TypeError) as exc:
        raise IncompatibleShapes(f"{what} cannot take the output of {source}, of shape {_fmt(x.shape)}: "
                                 f"{_first_line(exc)}") from exc


def build_network(
    store: ModelStore,
    base_ref: str,
    reuse: str,
    *,
    head: HeadSpec | str | None = None,
    classes: int | None = None,
    regression: bool | int = False,
    trainable: str | None = None,
    match: str = "full",
    input_shape: Sequence[int | None] | None = None,
    name: str = "built",
    seed: int | None = None,
) -> BuiltNetwork:
    """Build a new network from the layers of ``base_ref`` that the scope ``reuse`` selects.

    Args:
        store: the store holding the base.
        base_ref: ``NAME`` or ``NAME:VERSION`` of the base.
        reuse: scope pattern selecting the layers to copy (see :func:`reuse.select.select_layers`).
        head: a :class:`HeadSpec` or its short string; may be empty when ``classes``/``regression`` is given.
        classes: append a softmax output layer with this many classes.
        regression: append a linear output layer (True: one target; an int: that many).
        trainable: scope pattern (same ``match`` mode) of reused layers to leave trainable; others are frozen.
        match: ``"full"`` or ``"prefix"`` for both patterns.
        input_shape: the new input's shape without batch dimension; default: what the base gave the first
            selected layer.
        name: the Keras model name.
        seed: makes head initialisation and dropout reproducible.

    Returns:
        The uncompiled model and its lineage dict (see docs/building.md).

    Raises:
        NotFound, InvalidPattern, NoLayersMatched, InvalidInput, IncompatibleShapes, UnsafeModel, StoreCorrupt.
    """
    spec = parse_head(head) if isinstance(head, str) else (head or HeadSpec())
    if not isinstance(spec, HeadSpec):
        raise InvalidInput(f"invalid head {head!r}: expected a HeadSpec or a head spec string")
    full_head = spec.with_output(classes=classes, regression=regression)
    if not full_head.layers:
        raise InvalidInput("nothing to put on top of the reused layers: give a head, classes or regression")
    shape_override = _input_shape(input_shape)
    ref = store.resolve(base_ref)
    base = str(ref)
    arch = parse_architecture(store.model_config(ref))
    selection = select_layers(arch.names, reuse, match=match)
    keep_trainable: set[str] = set()
    if trainable is not None:
        keep_trainable = set(select_layers(selection.matched, trainable, match=match).matched)
    plan = plan_chain(arch, selection.matched, reuse)
    first = plan.layers[0]
    in_shape = shape_override or _known(base_input_shape(arch, first), first)[1:]
    weights = store.read_layer_weights(ref, [n.name for n in plan.layers])
    model, head_names = _assemble(plan, weights, full_head, in_shape, keep_trainable, arch, base, name, seed,
                                  output_appended=full_head is not spec)
    lineage = {
        "format": LINEAGE_FORMAT,
        "operation": "build",
        "base": {"name": ref.name, "version": ref.version},
        "scope": reuse,
        "match": match,
        "trainable": trainable,
        "head": spec.to_string(),
        "head_spec": spec.to_dict(),
        "output": _output_entry(classes, regression),
        "input_shape": list(in_shape),
        "layers": [
            {"name": n.name, "class_name": n.class_name, "trainable": n.name in keep_trainable,
             "params": int(sum(a.size for a in weights[n.name])),
             "from": {"name": ref.name, "version": ref.version, "layer": n.name}}
            for n in plan.layers
        ],
        "skipped": [{"name": n.name, "class_name": n.class_name} for n in plan.skipped],
        "head_layers": head_names,
    }
    return BuiltNetwork(model, lineage)


def _known(shape: Any, node: LayerNode) -> tuple:
    if shape is None or len(shape) < 2:
        raise InvalidInput(f"the base does not record the input shape of {node.name}; pass an input shape")
    return tuple(shape)


def _output_entry(classes: int | None, regression: bool | int) -> dict[str, int] | None:
    if classes is not None:
        return {"classes": int(classes)}
    if regression is not False:
        return {"regression": 1 if regression is True else int(regression)}
    return None


def _assemble(plan: ChainPlan, weights: dict[str, list[np.ndarray]], head: HeadSpec, in_shape: tuple,
              keep_trainable: set[str], arch: Any, base: str, name: str, seed: int | None,
              *, output_appended: bool) -> tuple[Any, list[str]]:
    import keras

    from reuse.head_layers import apply_head

    reused = {n.name for n in plan.layers}
    first_source = plan.layers[0].inputs[0]
    input_name = first_source if first_source in arch.inputs and first_source not in reused else "input"
    inputs = keras.Input(shape=in_shape, name=input_name)
    x, source = inputs, f"the input {input_name}"
    for node in plan.layers:
        layer = new_layer(node)
        got = x.shape
        x = _call(layer, x, f"layer {node.name} ({node.class_name})", source)
        _copy_weights(layer, weights[node.name], node, base, got)
        layer.trainable = node.name in keep_trainable
        source = f"layer {node.name}"
    x, names = apply_head(head, x, taken=reused | {input_name}, seed=seed, output_appended=output_appended,
                          output=(("classes" if head.layers[-1].activation == "softmax" else "regression")
                                  if output_appended else None))
    return keras.Model(inputs, x, name=name), names
