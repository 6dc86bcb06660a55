"""The private Keras 3 attributes the core relies on, in one place, each with why no public API will do.

Keras' public API lists a model's top-level layers (``Model.layers``) and builds graphs, but does not
walk nested models, expose a functional graph's nodes, or hand out a layer's random seed generators.
When Keras changes one of these, this module is the one to fix (the training and graph tests cover it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def all_layers(layer: Any, *, include_self: bool = False, recursive: bool = True) -> list[Any]:
    """Every layer below ``layer`` in order (nested models' layers too, unless not ``recursive``).

    Why private: ``Model.layers`` is the top level only; ``_flatten_layers`` is the walk Keras itself
    uses to collect weights, so it sees exactly the layers whose variables a model trains.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def inbound_nodes(op: Any) -> list[Any]:
    """The live list of graph nodes where ``op`` (a layer or operation) was called.

    Why private: a functional graph's edges exist only as these node lists; we read them to walk the
    graph through nested models, and restore them after building a temporary graph over the same layers.
    """
    return op._inbound_nodes


def outbound_nodes(op: Any) -> list[Any]:
    """The live list of graph nodes that consume ``op``'s outputs (see :func:`inbound_nodes`)."""
    return op._outbound_nodes


def keras_history(tensor: Any) -> Any:
    """The (operation, node index, tensor index) record of a symbolic Keras tensor.

    Why private: it is how a symbolic tensor knows the call that made it; there is no public accessor.
    """
    return tensor._keras_history


def producer_name(tensor: Any) -> str | None:
    """The name of the layer (or operation) that made a symbolic Keras tensor; None when unknown.

    Why private: output tensors carry generated names ("keras_tensor_7"); only the tensor's
    ``_keras_history`` leads to the layer, whose name is the one a user chose.
    """
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None) if history is not None else None
    return getattr(op, "name", None)


def set_keras_history(tensor: Any, history: Any) -> None:
    """Put back a record saved with :func:`keras_history` (a temporary graph rewrites it)."""
    tensor._keras_history = history


def seed_generators(layer: Any) -> list[Any]:
    """The random seed generators a layer holds (dropout, noise, random augmentation), maybe none.

    Why private: reseeding runs and telling random layers apart need them, and Keras keeps them in
    ``_seed_generators`` only.
    """
    return list(getattr(layer, "_seed_generators", None) or [])


def is_layer(op: Any) -> bool:
    """Whether a graph operation is a layer (one :func:`all_layers` can walk) rather than a bare op
    (a ``keras.ops`` call in a functional graph)."""
    return hasattr(op, "_flatten_layers")


def takes_training(layer: Any) -> bool:
    """Whether ``layer``'s ``call`` has a ``training`` argument (it behaves differently while training)."""
    import inspect

    try:
        return "training" in inspect.signature(type(layer).call).parameters
    except (TypeError, ValueError):
        return False


@contextmanager
def inference_mode(layers: list[Any]) -> Iterator[None]:
    """Within the block, ``layers`` run as in inference (``training=False``) whatever their caller asks.

    Why not public: Keras passes a model's ``training`` flag to every layer it calls, and has no
    per-layer switch except for batch normalisation (``trainable=False``). A frozen base called with
    ``training=False``, as the Keras transfer-learning guide does, is not available inside one graph, so
    each layer's bound ``call`` is shadowed by one that passes ``training=False`` (an instance attribute
    set past Keras' attribute tracking), and removed afterwards. Graphs traced inside the block keep it.
    """
    import functools

    done = []
    try:
        for layer in layers:
            original = layer.call

            @functools.wraps(original)
            def call(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                kwargs["training"] = False
                return _original(*args, **kwargs)

            object.__setattr__(layer, "call", call)
            done.append(layer)
        yield
    finally:
        for layer in done:
            object.__delattr__(layer, "call")


def keras_class(module: str, name: str) -> Any | None:
    """The object Keras defines as ``name`` in ``module`` (``keras`` or a module below it), or None.

    Why private: Keras records some classes of its own by the private module that defines them — the
    operations of a functional graph (``keras.src.ops.numpy.Add``) and layers that only its applications
    use (ConvNeXt's ``LayerScale`` in ``keras.src.applications.convnext``). Keras' own loader imports that
    module to find the class; we resolve it the same way, to check what a config names before Keras loads
    it, and never copy the class. Only modules inside the ``keras`` package are imported here.
    """
    import importlib
    import re

    if not re.fullmatch(r"keras(\.[A-Za-z_][A-Za-z0-9_]*)*", module) or len(module) > 200:
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return vars(mod).get(name)


def is_functional(model: Any) -> bool:
    """Whether ``model`` is a functional model (a graph of layer calls), whatever its own class.

    Why private: a subclass of ``keras.Model`` whose ``__init__`` builds a graph (KerasHub backbones) is
    an instance of Keras' ``Functional`` class, which is not exported; a subclassed model with its own
    ``call`` is not. No public attribute tells the two apart.
    """
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)
