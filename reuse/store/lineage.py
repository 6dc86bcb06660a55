"""Ancestry of a stored model: the chain of bases it was built from, read from the ``lineage`` metadata.

Any operation that makes a model from another records ``lineage["base"] = {"name": ..., "version": ...}``
(see docs/building.md); :func:`ancestry` follows those links back to a model with no base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reuse.errors import NotFound
from reuse.store import ModelRef, ModelStore

MAX_DEPTH = 100


def _base_ref(lineage: dict[str, Any]) -> ModelRef | None:
    base = lineage.get("base") if isinstance(lineage, dict) else None
    if not isinstance(base, dict) or "name" not in base or "version" not in base:
        return None
    try:
        return ModelRef(str(base["name"]), int(base["version"]))
    except (TypeError, ValueError):
        return None


def ancestry(store: ModelStore, ref: str) -> list[dict[str, Any]]:
    """Entries from ``ref`` back to its oldest ancestor, newest first.

    Each entry: ``model`` ("name:version"), ``name``, ``version``, ``created``, ``description``,
    ``operation`` (e.g. "build", or null for a model registered directly), ``base`` ("name:version" or
    null), ``lineage`` (the stored dict) and ``missing`` (true when the base is no longer in the store;
    the walk stops there).

    Raises:
        NotFound: ``ref`` itself is not in the store.
    """
    entries: list[dict[str, Any]] = []
    current: ModelRef | None = store.resolve(ref)
    seen: set[str] = set()
    while current is not None and str(current) not in seen and len(entries) < MAX_DEPTH:
        seen.add(str(current))
        try:
            info = store.info(current)
        except NotFound:
            entries.append({"model": str(current), "name": current.name, "version": current.version,
                            "created": None, "description": None, "operation": None, "base": None,
                            "lineage": {}, "missing": True})
            break
        lineage = info.lineage or {}
        base = _base_ref(lineage)
        entries.append({
            "model": info.ref, "name": info.name, "version": info.version, "created": info.created,
            "description": info.description, "operation": lineage.get("operation"),
            "base": str(base) if base else None, "lineage": lineage, "missing": False,
        })
        current = base
    return entries


def layer_origins(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each reused layer of the newest model, the chain of ``model/layer`` it was copied through,
    oldest last (e.g. ``{"hidden1": ["b:1/hidden1", "a:1/hidden1"]}``)."""
    if not entries:
        return {}
    origins: dict[str, list[str]] = {}
    for layer in entries[0]["lineage"].get("layers", []):
        chain: list[str] = []
        name = (layer.get("from") or {}).get("layer", layer.get("name"))
        for entry in entries[1:]:
            if entry["missing"]:
                chain.append(f"{entry['model']}/{name} (missing)")
                break
            chain.append(f"{entry['model']}/{name}")
            copied = {lay.get("name"): lay for lay in entry["lineage"].get("layers", [])}.get(name)
            if copied is None:  # trained in that model, not copied into it
                break
            name = (copied.get("from") or {}).get("layer", name)
        origins[str(layer.get("name"))] = chain
    return origins


# Operations whose base is the same network before more training: its history continues the base's.
CONTINUES_TRAINING = frozenset({"train", "finetune"})


@dataclass(frozen=True)
class HistorySegment:
    """The epochs one version added to a network's training: ``model`` ("name:version"), ``operation``
    (``train``, ``finetune hidden3``, ``as registered`` for a version registered with its history ...) and
    its per-epoch ``history``."""

    model: str
    operation: str
    history: dict[str, list[float]]

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss") or [])


def training_history(store: ModelStore, ref: str) -> list[HistorySegment]:
    """The whole training history of ``ref``'s network along its lineage, oldest segment first.

    Starts with ``ref``'s own history and follows its base while the version was made by training the
    base further (train, finetune); stops at a build (a new network from copied layers: its base's
    history belongs to another network), at a version without history, and at a missing base.

    Raises:
        NotFound: ``ref`` is not in the store.
    """
    segments: list[HistorySegment] = []
    for entry in ancestry(store, ref):
        if entry["missing"]:
            break
        history = store.info(entry["model"]).history or {}
        if not history.get("loss"):
            break
        op = entry["operation"]
        steps = entry["lineage"].get("steps") or []
        unfrozen = (steps[-1].get("unfrozen") or []) if op == "finetune" and steps else []
        segments.append(HistorySegment(entry["model"], " ".join([str(op or "as registered"), *unfrozen]), history))
        if op not in CONTINUES_TRAINING:
            break
    return segments[::-1]
