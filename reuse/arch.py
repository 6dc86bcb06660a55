"""A stored model's architecture read from its Keras ``model_config`` alone (no weights, no model built).

:func:`parse_architecture` turns the JSON into a list of :class:`LayerNode` (name, class, config, the
layers it reads from, the input shape Keras recorded); :func:`plan_chain` checks that selected layers form a
chain and applies the gap rule; :func:`new_layer` makes a fresh Keras layer from a node in safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reuse.errors import IncompatibleShapes, InvalidInput, StoreCorrupt, UnsafeModel

Shape = tuple  # a shape with its batch dimension first, e.g. (None, 28, 28, 1)

# Layers that are the identity at inference and hold no weights: a gap made only of these may be skipped,
# because the selected layers after the gap saw the same values at inference as they will now.
INFERENCE_IDENTITY = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "ActivityRegularization",
})
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
_UNSAFE_CLASSES = frozenset({"Lambda", "TFOpLambda"})


@dataclass(frozen=True)
class LayerNode:
    name: str
    class_name: str
    config: dict[str, Any] = field(compare=False, repr=False)
    inputs: tuple[str, ...]  # the layers its (single) call reads from
    calls: int  # how many times the base calls it (>1: a shared layer)
    input_shape: Shape | None  # as recorded by Keras (functional models), with batch dimension


@dataclass(frozen=True)
class Architecture:
    kind: str
    name: str
    inputs: dict[str, Shape | None]  # input layer name -> batch shape
    layers: tuple[LayerNode, ...]  # every layer but the inputs, in the base's order

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.layers]

    def node(self, name: str) -> LayerNode:
        for n in self.layers:
            if n.name == name:
                return n
        raise KeyError(name)


def _shape(value: Any) -> Shape | None:
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _tensors(obj: Any) -> list[dict[str, Any]]:
    """Keras tensors referenced in a Keras 3 inbound node's args/kwargs (nested lists/dicts)."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj.get("config", {})]
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _inbound(entry: dict[str, Any]) -> tuple[tuple[str, ...], int, Shape | None]:
    nodes = entry.get("inbound_nodes") or []
    if not nodes:
        return (), 0, None
    first = nodes[0]
    if isinstance(first, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        tensors = _tensors(first)
        names = tuple(str(t["keras_history"][0]) for t in tensors if t.get("keras_history"))
        shape = _shape(tensors[0].get("shape")) if len(tensors) == 1 else None
        return names, len(nodes), shape
    # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
    return tuple(str(t[0]) for t in first if isinstance(t, list) and t), len(nodes), None


def parse_architecture(model_config: dict[str, Any]) -> Architecture:
    """Read layer names, classes, configs and connections from a Keras legacy ``model_config`` dict.

    Raises:
        StoreCorrupt: the config does not have the expected layout.
        InvalidInput: the model is not a Sequential or functional model.
    """
    try:
        kind = model_config["class_name"]
        cfg = model_config["config"]
        entries = cfg["layers"]
    except (KeyError, TypeError) as exc:
        raise StoreCorrupt(f"model_config lacks {exc}; not a Keras model architecture") from exc
    if kind not in MODEL_CLASSES:
        raise InvalidInput(f"cannot reuse layers of a {kind!r} model: expected a Sequential or functional model")
    inputs: dict[str, Shape | None] = {}
    nodes: list[LayerNode] = []
    previous: str | None = None
    for entry in entries:
        cls, lcfg = entry["class_name"], entry.get("config", {})
        name = str(entry.get("name") or lcfg.get("name"))
        if cls == "InputLayer":
            inputs[name] = _shape(lcfg.get("batch_shape") or lcfg.get("batch_input_shape"))
            previous = name
            continue
        if kind == "Sequential":
            if previous is None:  # no InputLayer entry: the shape may be recorded elsewhere
                previous = "input"
                inputs[previous] = _shape(cfg.get("build_input_shape") or lcfg.get("batch_input_shape"))
            node = LayerNode(name, cls, lcfg, (previous,), 1, None)
            previous = name
        else:
            ins, calls, shape = _inbound(entry)
            node = LayerNode(name, cls, lcfg, ins, calls, shape)
        nodes.append(node)
    return Architecture(kind, str(cfg.get("name", "")), inputs, tuple(nodes))


@dataclass(frozen=True)
class ChainPlan:
    """Selected layers that form a chain, and the unselected layers skipped in gaps between them."""

    layers: tuple[LayerNode, ...]
    skipped: tuple[LayerNode, ...]


def _not_chain(msg: str) -> IncompatibleShapes:
    return IncompatibleShapes(f"the selection is not a chain: {msg}")


def _single_input(node: LayerNode, role: str) -> str:
    if node.calls > 1:
        raise _not_chain(f"{role} {node.name} ({node.class_name}) is shared: the base calls it {node.calls} times")
    if len(node.inputs) != 1:
        got = ", ".join(node.inputs) or "none"
        raise _not_chain(f"{role} {node.name} ({node.class_name}) takes {len(node.inputs)} inputs ({got}); "
                         "each layer in a chain takes exactly one")
    return node.inputs[0]


def plan_chain(arch: Architecture, selected: Sequence[str], pattern: str = "") -> ChainPlan:
    """Check that ``selected`` (in base order) is a chain and apply the gap rule.

    Gap rule: an unselected layer between two selected ones is skipped if it is the identity at
    inference and holds no weights (dropout, noise); anything else there is refused, because the layers
    after it were trained on its output.

    Raises:
        IncompatibleShapes: a layer takes several inputs, is shared, is not fed by the previous selected
            layer, or a gap holds a layer that cannot be skipped (the message names it and a wider scope).
        InvalidInput: a selected layer is a nested model.
        UnsafeModel: a selected layer runs arbitrary Python code (Lambda).
    """
    by_name = {n.name: n for n in arch.layers}
    chosen = [by_name[s] for s in selected]
    selected_set = set(selected)
    for node in chosen:
        if node.class_name in MODEL_CLASSES:
            raise InvalidInput(f"layer {node.name} is a nested {node.class_name} model; "
                               "reusing a nested model as one layer is not supported")
        if node.class_name in _UNSAFE_CLASSES:
            raise UnsafeModel(f"layer {node.name} is a {node.class_name} layer, which runs arbitrary Python "
                              "code; it cannot be reused in safe mode")
    skipped: list[LayerNode] = []
    for prev, node in zip(chosen, chosen[1:], strict=False):
        gap: list[LayerNode] = []
        source = _single_input(node, "selected layer")
        while source != prev.name:
            if source in arch.inputs or source not in by_name or source in selected_set:
                raise _not_chain(f"{node.name} does not read from {prev.name} (it reads from {source})")
            gap_node = by_name[source]
            gap.append(gap_node)
            source = _single_input(gap_node, "layer")
        gap.reverse()
        blocking = [g for g in gap if g.class_name not in INFERENCE_IDENTITY]
        if blocking:
            listed = ", ".join(f"{g.name} ({g.class_name})" for g in blocking)
            names = "|".join(_escape(g.name) for g in blocking)
            them = "it" if len(blocking) == 1 else "them"
            hint = f"; select {them} too, e.g. --reuse '{pattern}|{names}'," if pattern else ";"
            raise IncompatibleShapes(
                f"unselected layer(s) {listed} sit between selected layers {prev.name} and {node.name}, and "
                f"{node.name} was trained on their output{hint} or end the selection at {prev.name}"
            )
        skipped.extend(gap)
    if chosen:
        _single_input(chosen[0], "selected layer")
    return ChainPlan(tuple(chosen), tuple(skipped))


def _escape(name: str) -> str:
    return "".join("\\" + c if not (c.isalnum() or c == "_") else c for c in name)


def _legacy_fixups(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Normalise configs written by Keras 2 (tf.keras) so Keras 3 accepts them."""
    config = dict(config)
    config.pop("batch_input_shape", None)  # we give the new network its own Input
    axis = config.get("axis")
    if class_name == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        config["axis"] = int(axis[0])
    return config


def new_layer(node: LayerNode) -> Any:
    """A fresh, unbuilt Keras layer from ``node``'s config, deserialised in safe mode.

    Raises:
        UnsafeModel: the layer needs arbitrary code (Lambda).
        InvalidInput: Keras does not know the class or cannot rebuild the layer from its config.
    """
    import keras

    import reuse.layers  # noqa: F401  (registers our custom layers before lookup)

    if node.class_name in _UNSAFE_CLASSES:
        raise UnsafeModel(f"layer {node.name} is a {node.class_name} layer, which runs arbitrary Python code")
    entry: dict[str, Any] = {"class_name": node.class_name, "config": _legacy_fixups(node.class_name, node.config)}
    if hasattr(keras.layers, node.class_name):
        entry.update(module="keras.layers", registered_name=None)
    try:
        layer = keras.saving.deserialize_keras_object(entry, safe_mode=True)
    except (TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"cannot rebuild layer {node.name} ({node.class_name}) from its config: {first}") from exc
    if not isinstance(layer, keras.layers.Layer):
        raise InvalidInput(f"{node.name} ({node.class_name}) is not a Keras layer")
    return layer


def base_input_shape(arch: Architecture, node: LayerNode) -> Shape | None:
    """The shape (with batch dimension) that ``node`` receives in the base, or None if unknown.

    Functional configs record it; for Sequential models it is propagated from the model's input through
    the layers before ``node`` with ``compute_output_shape`` (no weights are created).
    """
    if node.input_shape is not None:
        return node.input_shape
    source = node.inputs[0] if len(node.inputs) == 1 else None
    if source in arch.inputs:
        return arch.inputs[source]
    if source is None or arch.kind != "Sequential":
        return None
    shape = next(iter(arch.inputs.values()), None)
    for prior in arch.layers:
        if prior.name == node.name or shape is None:
            break
        try:
            shape = tuple(new_layer(prior).compute_output_shape(shape))
        except (NotImplementedError, ValueError, TypeError, AttributeError):
            return None
    return shape
