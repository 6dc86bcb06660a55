"""Changing which layers train, safely.

Keras traces its training step with the trainable variables it sees at the first ``fit`` after
``compile()``; flipping ``layer.trainable`` later is silently ignored until the model is compiled again.
:func:`set_trainable` is the one function that changes the flags, and it recompiles a compiled model.
"""

from __future__ import annotations

from typing import Any

from reuse.select import select_layers


def set_trainable(model: Any, scope: str, trainable: bool, *, match: str = "full") -> list[str]:
    """Set ``trainable`` on the model's layers that the scope pattern selects; recompile if compiled.

    A compiled model is recompiled from its own compile config (same optimizer settings, loss and
    metrics; the optimizer starts with fresh state, as it must for a different set of variables). If the
    compile config cannot be rebuilt (for instance an unregistered custom loss), the model is marked as
    not compiled so the next ``fit`` fails loudly instead of training the wrong weights.

    Args:
        model: a Keras model.
        scope: pattern matched against the names of ``model.layers`` (see :func:`reuse.select.select_layers`).
        trainable: the new flag.
        match: ``"full"`` or ``"prefix"``.

    Returns:
        The names of the layers whose flag was set, in model order.

    Raises:
        InvalidPattern, NoLayersMatched: as :func:`reuse.select.select_layers`.
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
