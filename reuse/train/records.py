"""What the store records about a trained version: metrics, history, settings and lineage."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from reuse.train.fit import TrainResult


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def lineage(parent_lineage: dict[str, Any] | None, parent_ref: str | None,
            step: dict[str, Any]) -> dict[str, Any]:
    """The parent's lineage carried forward, with ``parent`` set and ``step`` appended to ``steps``.

    Like every operation that makes a model from another (docs/building.md), it also records
    ``operation`` and ``base`` ({"name", "version"} of the parent), which ``reuse lineage`` follows.

    ``steps`` is the ordered list of what produced this version (``build``, ``train``, ``finetune``,
    ``pretrain`` ...), each a dict with at least ``op`` and ``at``.
    """
    out = dict(parent_lineage or {})
    steps = list(out.get("steps") or [])
    steps.append({"at": now(), **step})
    out["steps"] = steps
    out["operation"] = step["op"]
    if parent_ref is not None:
        out["parent"] = parent_ref
        name, _, version = parent_ref.partition(":")
        out["base"] = {"name": name, "version": int(version)}
    return out


def train_record(result: TrainResult, *, op: str, data: str, val: str | None, parent_ref: str | None,
                 parent_lineage: dict[str, Any] | None, seeds: dict[str, Any] | None = None,
                 extra_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ModelStore.register`` describing a train or fine-tune result."""
    metrics: dict[str, Any] = dict(result.metrics)
    if seeds:
        metrics["seeds"] = seeds
    settings = result.settings()
    settings.update(data=data, val=val, **(extra_settings or {}))
    step = {"op": op, "from": parent_ref, "data": data, "epochs_run": result.epochs_run}
    if result.unfrozen:
        step["unfrozen"] = list(result.unfrozen)
    return {
        "metrics": metrics,
        "history": result.history,
        "settings": settings,
        "lineage": lineage(parent_lineage, parent_ref, step),
    }
