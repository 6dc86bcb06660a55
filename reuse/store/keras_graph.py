"""A stored model as its layer graph: the Keras 3 config a version keeps beside Keras' legacy one, the
model rebuilt from it, functional subclasses stored as their graph, and the graph checks a user's config
passes before Keras is handed it.

Keras' legacy HDF5 config drops each layer's module, so an operation node (``x + y``, recorded as ``Add``)
reads as the layer of the same name and a class Keras keeps in a private module (ConvNeXt's
``LayerScale``) cannot be found; the Keras 3 config names both (docs/store-format.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reuse.errors import InvalidInput, StoreCorrupt
from reuse.trust import check_depth


def keras_config_text(model: Any) -> str:
    """``model``'s Keras 3 config as JSON (every layer and operation with its module), without compile
    settings: what a store file keeps beside Keras' legacy config.

    Raises:
        InvalidInput: Keras cannot serialise the model.
    """
    try:
        config = json.loads(model.to_json())
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise InvalidInput(f"Keras cannot describe model {model.name!r} as a config: {exc}") from exc
    config.pop("compile_config", None)
    return json.dumps(config)


_LEGACY_KNOWN = frozenset({"Functional", "Sequential", "Model", "InputLayer"})  # recorded under keras.src too


def needs_keras3(config: Any) -> bool:
    """Whether a Keras 3 config names a class by a private Keras module (an operation node, a layer only
    Keras' applications use), which Keras' legacy config cannot stand for."""
    stack = [config]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            module = obj.get("module")
            if isinstance(module, str) and module.startswith("keras.src.") and "class_name" in obj \
                    and obj["class_name"] not in _LEGACY_KNOWN:
                return True
            stack.extend(v for v in obj.values() if isinstance(v, (dict, list)))
        elif isinstance(obj, list):
            stack.extend(v for v in obj if isinstance(v, (dict, list)))
    return False


def rebuild(path: Path, config: dict[str, Any], *, safe_mode: bool) -> Any:
    """The model ``config`` (a Keras 3 config) describes, with the weights of the HDF5 model file ``path``
    (Keras reads them by layer order, as its own loader does). Keras' legacy loader stays the rule for
    files it can rebuild: it names the variables of a nested model after it (``member1/hidden1/kernel``),
    which saving a model that holds two such models needs."""
    import keras

    model = keras.saving.deserialize_keras_object(config, safe_mode=safe_mode)
    model.load_weights(str(path))
    return model


def check_graph(config: Any, what: str) -> None:
    """Refuse, before Keras is handed it, a config whose graph cannot be read: nested too deep, a layer that
    reads its own output or a tensor no layer produces (a cycle), a malformed node. A model of another
    class (a functional subclass) is left to the class check and to loading.

    Raises:
        InvalidInput: naming ``what`` and the fault.
    """
    from reuse.graph.arch import MODEL_CLASSES
    from reuse.graph.reader import parse_architecture

    check_depth(config, what)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise InvalidInput(f"{what}: the model config is not a Keras model config")
    if config["class_name"] not in MODEL_CLASSES:
        return
    try:
        parse_architecture(config)
    except StoreCorrupt as exc:
        raise InvalidInput(f"{what}: {exc}") from exc


def as_graph_model(model: Any) -> tuple[Any, str | None]:
    """``model`` as a model whose config is its layer graph, and the class it had if that had to change.

    A subclass of ``keras.Model`` whose constructor builds a graph (a KerasHub backbone) records its
    constructor's arguments as its config, not the graph; it is stored as a functional model over the
    same layers (the same weights, the same outputs), and its class (``module.Name``) is returned so
    the version's metadata can name it.

    Raises:
        InvalidInput: a subclassed model (its own ``call``), which has no graph to reuse.
    """
    import keras

    from reuse.keras_compat import is_functional

    kind = type(model)
    if kind is keras.Sequential or (is_functional(model) and kind.__module__.startswith("keras.")):
        return model, None
    label = f"{kind.__module__}.{kind.__qualname__}"
    if not (is_functional(model) or isinstance(model, keras.Sequential)):
        raise InvalidInput(f"model {model.name!r} is a {label}, a subclassed keras.Model with its own "
                           "call(): its config holds no layer graph, so its layers cannot be reused; build "
                           "it with the functional API or keras.Sequential")
    return keras.Model(model.input, model.output, name=model.name), label
