"""The prediction-problem check: the spread of the members' scores on held-out data, and whether the
ensemble beats the mean member by more than that spread."""

from __future__ import annotations

from typing import Any

import numpy as np

from reuse.data import Dataset, check_for_model, output_kind
from reuse.errors import NotFound
from reuse.store import ModelStore
from reuse.train.infer import Predictor, score
from reuse.train.task import Task

TOLERANCE = 1e-9  # identical members give a gain and a spread of rounding size: not a win


def outputs_check(member_refs: list[str], member_outputs: list[np.ndarray], ensemble_output: np.ndarray,
                  y: np.ndarray, task: Task, *, data: str, method: str) -> dict[str, Any]:
    """Scores of each member and of the ensemble from their outputs on the same samples.

    Returns:
        ``{"data", "samples", "metric", "method", "members": [{"model", "loss", METRIC}], "mean", "std"
        (population), "ensemble", "gain" (how much better the ensemble is than the mean member: higher
        accuracy, or lower mae), "beats_spread" (gain > std, beyond rounding)}``.
    """
    rows = [
        {"model": ref, **score(task, out, y)} for ref, out in zip(member_refs, member_outputs, strict=True)
    ]
    ens = score(task, ensemble_output, y)
    metric = task.metric
    values = np.array([r[metric] for r in rows], dtype=np.float64)
    mean, std = float(values.mean()), float(values.std())
    gain = ens[metric] - mean if metric == "accuracy" else mean - ens[metric]
    return {"data": data, "samples": int(len(y)), "metric": metric, "method": method, "members": rows,
            "mean": mean, "std": std, "ensemble": float(ens[metric]), "ensemble_loss": float(ens["loss"]),
            "gain": float(gain), "beats_spread": bool(gain > std + TOLERANCE)}


def ensemble_check(member_refs: list[str], members: list[Any], ensemble: Any, data: Dataset, *,
                   method: str) -> dict[str, Any]:
    """:func:`outputs_check` for stored (or in-memory) member models and the ensemble network on ``data``.

    Raises:
        InvalidInput: the data do not fit the models (shape, labels out of range, NaN).
    """
    kind = output_kind(ensemble)
    ds = check_for_model(data, ensemble, kind=kind)
    outs = [Predictor(m)(ds.x) for m in members]
    return outputs_check(member_refs, outs, Predictor(ensemble)(ds.x), ds.y, Task.for_output(kind),
                         data=data.source, method=method)


def mean_outputs_check(member_refs: list[str], members: list[Any], data: Dataset, *,
                       weights: list[float] | None = None) -> dict[str, Any]:
    """:func:`outputs_check` for the (weighted) mean of in-memory members' outputs, without building a
    network (used for the seeds of one training run)."""
    kind = output_kind(members[0])
    ds = check_for_model(data, members[0], kind=kind)
    outs = [Predictor(m)(ds.x) for m in members]
    w = weights or [1.0 / len(outs)] * len(outs)
    mean = sum(o.astype(np.float64) * wt for o, wt in zip(outs, w, strict=True)).astype(outs[0].dtype)
    return outputs_check(member_refs, outs, mean, ds.y, Task.for_output(kind),
                         data=data.source, method="mean")


def member_scores(store: ModelStore, lineage: dict[str, Any], data: Dataset) -> list[dict[str, Any]]:
    """Each member an ensemble's lineage lists, evaluated on ``data``: ``{"model", "weight", "loss",
    METRIC, "samples"}``, or ``{"model", "weight", "missing": true}`` for a member no longer in the store."""
    from reuse.train.infer import evaluate

    rows: list[dict[str, Any]] = []
    for m in lineage.get("members") or []:
        ref = f"{m.get('name')}:{m.get('version')}"
        try:
            model = store.load(ref)
        except NotFound:
            rows.append({"model": ref, "weight": m.get("weight"), "missing": True})
            continue
        rows.append({"model": ref, "weight": m.get("weight"), **evaluate(model, data)})
    return rows
