"""A stored model's architecture as a graph of layer calls, and fresh layers made from its nodes.

:class:`Architecture` is what :func:`reuse.graph.reader.parse_architecture` reads from a Keras
``model_config`` alone (no weights, no model built): nested models (a Sequential or functional model
used as a layer) are opened, so every leaf layer has a *path* — its name, prefixed by the names of the
models around it and ``/`` (``backbone/block_1_expand``). A call reads :class:`Ref` tensors (a base
input, or output ``i`` of another call) in the argument structure Keras recorded, so the selected part
of the graph can be replayed with the functional API. :func:`new_layer` makes a fresh Keras layer from
a node in safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reuse.errors import InvalidInput, UnsafeModel
from reuse.text import first_line

Shape = tuple  # a shape with its batch dimension first, e.g. (None, 28, 28, 1)
SEPARATOR = "/"  # between the names of nested models and a layer in a path

# Keras' random image augmentation layers: the identity at inference (tests/build/test_build_ops.py checks
# each against this Keras), no weights. A build never copies them, selected or not: the built model has none.
AUGMENTATION = frozenset({
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
    "RandomColorDegeneration", "RandomColorJitter", "RandomElasticTransform", "RandomErasing",
    "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPerspective",
    "RandomPosterization", "RandomSaturation", "RandomSharpness", "RandomShear", "Solarization", "AugMix",
    "CutMix", "MixUp", "RandAugment",
})
# Layers that are the identity at inference and hold no weights: a gap made only of these may be skipped,
# because the selected layers after the gap saw the same values at inference as they will now.
INFERENCE_IDENTITY = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "ActivityRegularization",
}) | AUGMENTATION
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
OP_MODULE = "keras.src.ops."  # where Keras records the operations of a functional graph (``x + y``: Add)
UNSAFE_CLASSES = frozenset({"Lambda", "TFOpLambda"})
UNSAFE_HINT = "pass --unsafe (unsafe=True) to run it, only if you trust the model's source"
MAX_DEPTH = 16  # nested models inside nested models


@dataclass(frozen=True)
class Ref:
    """A tensor of the base graph: output ``index`` of call ``call``, or the base input named ``input``."""

    call: str = ""
    index: int = 0
    input: str = ""

    def __str__(self) -> str:
        return (
            f"input {self.input}"
            if self.input
            else (self.call if self.index == 0 else f"{self.call}[{self.index}]")
        )


@dataclass(frozen=True)
class TensorSpec:
    shape: Shape | None
    dtype: str | None


@dataclass(frozen=True)
class Call:
    """One call of a leaf layer: ``key`` is unique (the path, ``#k`` added for the k-th further call)."""

    key: str
    layer: str  # the leaf layer's path
    args: Any = field(compare=False, repr=False)  # Keras' recorded structure, Ref in place of tensors
    kwargs: Any = field(compare=False, repr=False)
    inputs: tuple[Ref, ...]  # every Ref in args and kwargs, in order


class Nested:
    """A leaf layer or a nested model, inside the nested models its ``containers`` name (outermost first)."""

    containers: tuple[str, ...]

    @property
    def depth(self) -> int:
        return len(self.containers)


@dataclass(frozen=True)
class LayerNode(Nested):
    """A leaf layer (nested models opened). ``name`` is its path; ``leaf`` the Keras layer name."""

    name: str
    class_name: str
    config: dict[str, Any] = field(compare=False, repr=False)
    inputs: tuple[str, ...]  # the layers (paths) or base inputs its calls read from
    calls: int  # how many times the base calls it (>1: a shared layer)
    input_shape: Shape | None  # as recorded by Keras (one input), with batch dimension
    leaf: str = ""
    module: str | None = None  # where Keras finds the class (ops in functional graphs are not layers)
    registered_name: str | None = None
    containers: tuple[str, ...] = ()  # paths of the nested models around it, outermost first

    @property
    def op(self) -> bool:
        """An operation node (``x + y``, ``ops.mean``), not a layer: no weights, replayed all the same."""
        return bool(self.module) and str(self.module).startswith(OP_MODULE)


@dataclass(frozen=True)
class Container(Nested):
    """A nested model: its path, class and the paths of every leaf inside it (at any depth)."""

    name: str
    class_name: str
    leaves: tuple[str, ...]
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Architecture:
    kind: str
    name: str
    inputs: dict[str, Shape | None]  # base input name -> batch shape
    layers: tuple[LayerNode, ...]  # every leaf layer, in the base's order
    input_dtypes: dict[str, str] = field(default_factory=dict)
    containers: tuple[Container, ...] = ()
    calls: tuple[Call, ...] = ()  # in an order where every call comes after the calls it reads
    outputs: tuple[Ref, ...] = ()
    specs: dict[Ref, TensorSpec] = field(default_factory=dict, compare=False, repr=False)
    order: tuple[str, ...] = ()  # containers and leaves in display order (a container before its leaves)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.layers]

    def node(self, name: str) -> LayerNode:
        for n in self.layers:
            if n.name == name:
                return n
        raise KeyError(name)

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)


def escape(name: str) -> str:
    """``name`` as a scope pattern matching exactly it."""
    return "".join("\\" + c if not (c.isalnum() or c == "_") else c for c in name)


def exact_scope(names: Sequence[str]) -> str:
    """A scope pattern matching exactly the layers ``names``."""
    return "|".join(escape(n) for n in names)


def _legacy_fixups(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Normalise configs written by Keras 2 (tf.keras) so Keras 3 accepts them."""
    config = dict(config)
    config.pop("batch_input_shape", None)  # we give the new network its own Input
    axis = config.get("axis")
    if class_name == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        config["axis"] = int(axis[0])
    return config


def node_entry(node: LayerNode, name: str | None = None) -> dict[str, Any]:
    """The config entry Keras would deserialise for ``node`` (named ``name``), with its module when the
    config recorded one."""
    config = _legacy_fixups(node.class_name, node.config)
    if name is not None:
        config["name"] = name
    entry: dict[str, Any] = {"class_name": node.class_name, "config": config}
    if node.module:
        entry.update(module=node.module, registered_name=node.registered_name)
    return entry


def new_layer(node: LayerNode, name: str | None = None, *, unsafe: bool = False) -> Any:
    """A fresh, unbuilt Keras layer (or operation) from ``node``'s config, deserialised in safe mode.

    Args:
        node: the layer to copy.
        name: the new layer's name (default: the base layer's name).
        unsafe: allow a Lambda layer (its Python code is rebuilt and runs; only for trusted models).

    Raises:
        UnsafeModel: the layer needs arbitrary code (Lambda) and not ``unsafe``.
        UntrustedClass: a class that neither Keras nor a trusted module defines.
        InvalidInput: Keras does not know the class or cannot rebuild the layer from its config.
    """
    import keras

    import reuse.layers  # noqa: F401  (registers our custom layers before lookup)
    from reuse.trust import check_config

    if node.class_name in UNSAFE_CLASSES and not unsafe:
        raise UnsafeModel(f"layer {node.name} is a {node.class_name} layer, which runs arbitrary "
                          f"Python code; {UNSAFE_HINT}")
    entry = node_entry(node, name)
    if "module" not in entry and hasattr(keras.layers, node.class_name):
        entry.update(module="keras.layers", registered_name=None)
    check_config(entry, f"layer {node.name}", model=False)
    try:
        layer = keras.saving.deserialize_keras_object(entry, safe_mode=not unsafe)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"cannot rebuild layer {node.name} ({node.class_name}) from its config: "
                           f"{first_line(exc)}") from exc
    if not isinstance(layer, keras.Operation):
        raise InvalidInput(f"{node.name} ({node.class_name}) is not a Keras layer")
    return layer
