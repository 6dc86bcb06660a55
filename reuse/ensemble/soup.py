"""Weight averaging ("model soup"): one network with the members' architecture and their mean weights."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from reuse.ensemble.members import Member
from reuse.errors import IncompatibleShapes, InvalidInput

# Config keys that do not change what a trained network computes: names (and the references to them,
# replaced by position), whether a layer is frozen, and how its weights were first drawn.
_IGNORED = frozenset({"name", "trainable", "seed"})


def _names(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("name"), str):
            out.append(node["name"])
        for v in node.values():
            _names(v, out)
    elif isinstance(node, list):
        for v in node:
            _names(v, out)


def _normalise(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _normalise(v, names) for k, v in node.items()
                if k not in _IGNORED and not k.endswith("_initializer")}
    if isinstance(node, list):
        return [_normalise(v, names) for v in node]
    if isinstance(node, str):
        return names.get(node, node)
    return node


def normalised_config(model: Any) -> Any:
    """``model``'s config with names replaced by their order of appearance (``#0``, ``#1``, ...) and the
    keys in _IGNORED (and ``*_initializer``) dropped, so seeds of one architecture compare equal."""
    cfg = model.get_config()
    found: list[str] = []
    _names(cfg, found)
    names: dict[str, str] = {}
    for n in found:
        names.setdefault(n, f"#{len(names)}")
    return json.loads(json.dumps(_normalise(cfg, names), default=str))


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}.{k}".lstrip(".") + (" (missing in one)")
            d = _first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path.lstrip('.') or 'config'}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path.lstrip('.')}: {json.dumps(a)} vs {json.dumps(b)}"


def check_same_architecture(members: list[Member]) -> None:
    """Refuse members whose architectures differ (configs ignoring names, then weight shapes).

    Raises:
        InvalidInput: the configs differ (the message names the first difference).
        IncompatibleShapes: the weight lists differ in count or shape.
    """
    first = members[0]
    cfg = normalised_config(first.model)
    shapes = [tuple(w.shape) for w in first.model.weights]
    for m in members[1:]:
        diff = _first_difference(cfg, normalised_config(m.model))
        if diff:
            raise InvalidInput(f"cannot average weights: member {m.ref} has another architecture than member "
                               f"{first.ref} (first difference, {first.ref} vs {m.ref}: {diff})")
        got = [tuple(w.shape) for w in m.model.weights]
        if len(got) != len(shapes):
            raise IncompatibleShapes(f"cannot average weights: member {m.ref} has {len(got)} weights, member "
                                     f"{first.ref} {len(shapes)}")
        for i, (s, g) in enumerate(zip(shapes, got, strict=True)):
            if s != g:
                raise IncompatibleShapes(f"cannot average weights: weight {i} "
                                         f"({first.model.weights[i].path}) is {list(s)} in {first.ref} but "
                                         f"{list(g)} in {m.ref}")


def average_weights(members: list[Member], weights: list[float]) -> Any:
    """The first member's network with every weight replaced by the members' weighted mean.

    Every floating-point variable is averaged: trainable ones, frozen ones, and batch-normalisation
    moving means and variances (the mean of the members' statistics, not the statistics of the mean
    network); integer variables (counters, seed states) keep the first member's values.

    Raises:
        InvalidInput, IncompatibleShapes: as :func:`check_same_architecture`.
    """
    check_same_architecture(members)
    per_member = [m.model.get_weights() for m in members]
    averaged = []
    for i, first in enumerate(per_member[0]):
        if np.issubdtype(first.dtype, np.floating):
            acc = sum(np.asarray(w[i], np.float64) * wt for w, wt in zip(per_member, weights, strict=True))
            averaged.append(np.asarray(acc, dtype=first.dtype))
        else:
            averaged.append(first)
    model = members[0].model
    model.set_weights(averaged)
    return model
