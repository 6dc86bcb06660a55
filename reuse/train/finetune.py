"""Fine-tuning, and the functions that change which layers train.

Keras takes a change of ``layer.trainable`` into account only at ``compile()``: a compiled model keeps
tracing its training step with the variables it saw first. Our own training loop builds its step after
the flags are set (:func:`unfreeze_layers` before :func:`reuse.train.fit.train`; the builder freezes
reused layers before anything is compiled), so it needs no recompiling. :func:`set_trainable` is for
code that changes the flags of a model it has already compiled with Keras: it recompiles.
"""

from __future__ import annotations

import threading
from typing import Any

from reuse.data import Dataset
from reuse.graph.select import select_layers
from reuse.keras_compat import all_layers
from reuse.train.config import DEFAULT_LR, TrainConfig
from reuse.train.engine import Phase
from reuse.train.events import ProgressCallback
from reuse.train.features import FeatureCache
from reuse.train.fit import TrainResult, layer_names, train


def finetune(model: Any, unfreeze: str, data: Dataset, config: TrainConfig | None = None, *,
             match: str = "full", base_lr: float | None = None, val: Dataset | None = None,
             progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
             phase: Phase | None = None, features: FeatureCache | None = None) -> TrainResult:
    """Unfreeze the layers the scope ``unfreeze`` selects, then train.

    Batch-normalisation layers among them keep normalising with their moving statistics (inference
    mode; the statistics do not change) while their scale and offset train.

    Args:
        unfreeze: a scope pattern over layer names (see :func:`reuse.graph.select.select_layers`).
        match: ``full`` or ``prefix``.
        base_lr: the learning rate the model was trained with; when ``config.lr`` is ``None`` the
            rate is a tenth of it (default: a tenth of the optimizer's default rate).
        Other arguments as :func:`train`.

    Raises:
        NoLayersMatched, InvalidPattern: the scope selects nothing or is invalid.
    """
    config = config or TrainConfig()
    if config.lr is None:
        config = config.with_(lr=(base_lr if base_lr else DEFAULT_LR[config.optimizer]) / 10.0)
    names = layer_names(model)
    sel = select_layers(names, unfreeze, match=match)
    extra, bn = unfreeze_layers(model, sel.matched)
    result = train(model, data, config, val=val, progress=progress, cancel=cancel,
                   phase=phase or Phase(task="finetune"), extra_trainable=extra, features=features)
    result.unfrozen = sel.matched
    result.bn_inference = tuple(bn)
    return result


def _is_container(layer: Any) -> bool:
    return getattr(layer, "layers", None) is not None


def unfreeze_layers(model: Any, names: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    """Make the named layers (all layers inside a named nested model) trainable, others unchanged.

    Batch-normalisation layers stay frozen, so Keras keeps them in inference mode; their scale and
    offset are returned to be trained as extra variables. Returns (extra variables, their BN layers).
    """
    import keras

    everything = all_layers(model, include_self=True)
    leaves = [x for x in everything if not _is_container(x)]
    by_name = {x.name: x for x in everything}
    targets: dict[int, Any] = {}
    for name in names:
        layer = by_name[name]
        for leaf in ([layer] if not _is_container(layer)
                     else [x for x in all_layers(layer) if not _is_container(x)]):
            targets[id(leaf)] = leaf
    prior = {id(x): x.trainable for x in leaves}
    # Keras propagates a container's flag to everything inside it: open the containers on the way to
    # a target, then put every other layer's flag back.
    for container in (x for x in everything if _is_container(x)):
        inside = all_layers(container)
        if any(id(x) in targets for x in inside):
            container.trainable = True
    for leaf in leaves:
        leaf.trainable = prior[id(leaf)]
    extra, bn = [], []
    for leaf in targets.values():
        if isinstance(leaf, keras.layers.BatchNormalization):
            leaf.trainable = False
            extra += [v for v in (leaf.gamma, leaf.beta) if v is not None]
            bn.append(leaf.name)
        elif not isinstance(leaf, keras.layers.InputLayer):
            leaf.trainable = True
    return extra, bn



def set_trainable(model: Any, scope: str, trainable: bool, *, match: str = "full") -> list[str]:
    """Set ``trainable`` on the model's layers that the scope pattern selects; recompile if compiled.

    A compiled model is recompiled from its own compile config (same optimizer settings, loss and
    metrics; the optimizer starts with fresh state, as it must for a different set of variables). If the
    compile config cannot be rebuilt (for instance an unregistered custom loss), the model is marked as
    not compiled so the next ``fit`` fails loudly instead of training the wrong weights.

    Args:
        model: a Keras model.
        scope: pattern matched against the names of ``model.layers`` (see
        :func:`reuse.graph.select.select_layers`). trainable: the new flag.
        match: ``"full"`` or ``"prefix"``.

    Returns:
        The names of the layers whose flag was set, in model order.

    Raises:
        InvalidPattern, NoLayersMatched: as :func:`reuse.graph.select.select_layers`.
    """
    selection = select_layers([layer.name for layer in model.layers], scope, match=match)
    chosen = set(selection.matched)
    changed = False
    for layer in model.layers:
        if layer.name in chosen and layer.trainable != trainable:
            layer.trainable = trainable
            changed = True
    if changed:
        recompile(model)
    return list(selection.matched)


def recompile(model: Any) -> bool:
    """Recompile ``model`` from its compile config if it is compiled; return whether it was recompiled."""
    if not getattr(model, "compiled", False):
        return False
    config = model.get_compile_config()
    try:
        if config is None:
            raise ValueError("no compile config")
        model.compile_from_config(config)
    except (TypeError, ValueError):
        # Leave no stale training step behind: Keras refuses to fit an uncompiled model.
        model.compiled = False
        return False
    return True
