"""What ``reuse rank`` found: the scored candidates, best first, the raw-input baseline, what was not
ranked and why, and the rule that ordered them (:func:`order`).

The ranking rule. Each score orders the candidates and the baseline (higher is better); with one score
(``--metric logme``) that order is the ranking. With several (the default, ``auto``: LogME and k-NN),
each entry's position under each score is averaged (tied entries share the mean of their positions) and
the lowest mean position ranks first, ties broken by the first score. Positions, not raw values, are
averaged because the scores live on unrelated scales (nats per sample, a fraction of rows). The default
leaves SFDA out: on our benchmark (bench/rank.py) adding it lowered the agreement with trained heads;
``--metric logme,knn,sfda`` puts it in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_METRIC = ("logme", "knn")
LABELS = {"logme": "LogME", "knn": "k-NN acc", "sfda": "SFDA"}


@dataclass
class Scored:
    """One scored candidate (a cut of a model), or the baseline (``model`` None: the raw inputs)."""

    model: str | None
    version: int | None
    depth: int | None
    scope: str | None
    layers: tuple[str, ...]
    params: int
    width: int
    scores: dict[str, float | None]
    seconds: float
    combined: float | None = None
    rank: int | None = None
    note: str | None = None

    @property
    def ref(self) -> str:
        return "raw inputs" if self.model is None else f"{self.model}:{self.version}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scored:
        return cls(d.get("model"), d.get("version"), d.get("depth"), d.get("scope"),
                   tuple(d.get("layers") or ()), int(d.get("reused_params") or 0), int(d.get("width") or 0),
                   dict(d.get("scores") or {}), float(d.get("seconds") or 0.0), d.get("combined"),
                   d.get("rank"), d.get("note"))

    def to_dict(self) -> dict[str, Any]:
        d = {"model": self.model, "version": self.version, "depth": self.depth, "scope": self.scope,
             "layers": list(self.layers), "reused_params": self.params, "width": self.width,
             "scores": {k: _finite(v) for k, v in self.scores.items()}, "combined": _finite(self.combined),
             "rank": self.rank, "seconds": round(self.seconds, 4)}
        if self.note:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class NotRanked:
    """A model, or one cut of it, that was not scored, and why."""

    model: str
    version: int | None
    reason: str
    scope: str | None = None
    depth: int | None = None
    stopped: str | None = None  # "budget" or "cancelled" when that is why

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "depth": self.depth, "scope": self.scope,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NotRanked:
        return cls(str(d.get("model")), d.get("version"), str(d.get("reason")), d.get("scope"),
                   d.get("depth"))


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _positions(values: list[float | None]) -> list[float]:
    """1-based positions, best (highest) first; ties share their mean position; missing values last."""
    keyed = sorted(range(len(values)), key=lambda i: -(values[i] if values[i] is not None else -math.inf))
    pos = [0.0] * len(values)
    i = 0
    while i < len(keyed):
        j = i
        while j + 1 < len(keyed) and values[keyed[j + 1]] == values[keyed[i]]:
            j += 1
        for k in keyed[i:j + 1]:
            pos[k] = (i + j) / 2 + 1
        i = j + 1
    return pos


def order(entries: Sequence[Scored], metric: Sequence[str]) -> list[Scored]:
    """Set ``combined`` and ``rank`` of every entry (candidates and the baseline) by the ranking rule
    (module docstring) and return them best first. ``combined`` is the score itself with one metric,
    else the mean position (lower is better)."""
    entries = list(entries)
    if len(metric) == 1:
        for e in entries:
            e.combined = e.scores.get(metric[0])
        ranked = sorted(entries, key=lambda e: -(e.combined if e.combined is not None else -math.inf))
    else:
        per = [_positions([e.scores.get(m) for e in entries]) for m in metric]
        for i, e in enumerate(entries):
            e.combined = sum(p[i] for p in per) / len(per)
        first = metric[0]
        ranked = sorted(entries, key=lambda e: (e.combined, -(e.scores.get(first) or -math.inf)))
    for i, e in enumerate(ranked, start=1):
        e.rank = i
    return ranked


@dataclass
class Ranking:
    """The outcome of one rank run; ``candidates`` best first (the baseline is not among them but holds
    its own ``rank`` among them)."""

    data: str
    samples: int
    task: str  # "classification" or "regression"
    classes: int
    metric: tuple[str, ...]
    scores: tuple[str, ...]
    candidates: list[Scored]
    baseline: Scored
    not_ranked: list[NotRanked]
    models: list[str]
    seconds: float
    stopped: str | None = None
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    plot: str | None = None

    def recommendation(self) -> dict[str, Any] | None:
        """The best candidate, its margin to the runner-up (each score), whether it beats the raw inputs."""
        if not self.candidates:
            return None
        best = self.candidates[0]
        second = self.candidates[1] if len(self.candidates) > 1 else None
        beats = best.rank is not None and self.baseline.rank is not None and best.rank < self.baseline.rank
        margin = None if second is None else {
            k: _finite(best.scores[k] - second.scores[k]) if best.scores.get(k) is not None
            and second.scores.get(k) is not None else None for k in self.scores}
        return {"model": best.model, "version": best.version, "depth": best.depth, "scope": best.scope,
                "runner_up": None if second is None else {"model": second.model, "version": second.version,
                                                          "depth": second.depth, "scope": second.scope},
                "margin": margin,
                "combined_margin": None if second is None else _finite(abs((best.combined or 0.0)
                                                                           - (second.combined or 0.0))),
                "beats_baseline": beats}

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "samples": self.samples, "task": self.task, "classes": self.classes,
                "metric": list(self.metric), "scores": list(self.scores), "models": list(self.models),
                "candidates": [c.to_dict() for c in self.candidates], "baseline": self.baseline.to_dict(),
                "recommendation": self.recommendation(),
                "not_ranked": [n.to_dict() for n in self.not_ranked], "stopped": self.stopped,
                "seconds": round(self.seconds, 3), "warnings": list(self.warnings), "settings": self.settings,
                "plot": self.plot}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ranking:
        """The ranking a ``to_dict()`` document describes (what a rank job sends back)."""
        return cls(str(d["data"]), int(d["samples"]), str(d["task"]), int(d.get("classes") or 0),
                   tuple(d["metric"]), tuple(d["scores"]), [Scored.from_dict(c) for c in d["candidates"]],
                   Scored.from_dict(d["baseline"]),
                   [NotRanked.from_dict(n) for n in d.get("not_ranked") or ()],
                   list(d.get("models") or ()), float(d.get("seconds") or 0.0), d.get("stopped"),
                   list(d.get("warnings") or ()), dict(d.get("settings") or {}), d.get("plot"))
