"""``reuse advise --shortlist K``: train only the K candidates that ``reuse rank`` scores best.

The ranking runs first, on the training part of the data (the rows the advisor trains on, never its
validation rows), over the base's candidates (``--from``: the advisor's own depths, scopes or blocks, so
depth ``k`` of the ranking is depth ``k`` of the advice) or over every cut of every model ``--models``
selects. The K best cuts are then trained as the advisor trains any candidate (frozen, and fine-tuned
unless ``--no-finetune``, over the seeds), together with training from scratch, which is trained once,
with the architecture of the best-ranked model. The others are not trained: the advice lists them under
``shortlist.skipped`` with their rank and scores, so what was left out, and why, stays visible.

Across several models the per-model advice runs are joined into one table: each reuse row is labelled
with its model (``digits04:1 reuse 2 frozen``), and the recommendation applies the advisor's rule (the
simplest candidate that nothing beats by more than the noise) to every row together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reuse.advise.advice import (
    Advice,
    AdviseConfig,
    advise,
    noise_margin,
    resolve_output,
)
from reuse.advise.recommend import Candidate, CandidateResult, Recommendation, recommend
from reuse.data import Dataset, split_stratified, split_validation
from reuse.errors import InvalidInput
from reuse.heads import HeadSpec
from reuse.store import ModelStore

MAX_SHORTLIST = 50


@dataclass(frozen=True)
class BaseCandidate(Candidate):
    """A candidate of one of several bases (a shortlist across models)."""

    base: str = ""

    @property
    def label(self) -> str:
        plain = Candidate(self.depth, self.finetune).label
        return plain if self.depth == 0 else f"{self.base} {plain}"


def train_part(data: Dataset, val: Dataset | None, head: HeadSpec, classes: int | None,
               regression: bool | int, config: AdviseConfig) -> Dataset:
    """The rows the advisor will train on: all of ``data`` with validation data, else the part its
    validation split leaves (the same split as the advice's)."""
    if val is not None:
        return data
    _, reg = resolve_output(head, classes, regression, data, val)
    split = split_validation if reg is not False else split_stratified
    return split(data, config.val_split, config.seed)[0]


def _entry(c: Any) -> dict[str, Any]:
    return {"model": c.model, "version": c.version, "depth": c.depth, "scope": c.scope, "rank": c.rank,
            "scores": {k: v for k, v in c.scores.items()}, "combined": c.combined}


def shortlist_advice(store: ModelStore, data: Dataset, *, k: int, base: str | None = None,
                     models: str | Sequence[str] | None = None, val: Dataset | None = None,
                     head: HeadSpec | None = None, classes: int | None = None,
                     regression: bool | int = False, depths: str | list[int] | None = None,
                     scopes: list[str] | None = None, match: str = "full", blocks: str | None = None,
                     metric: str | None = None, config: AdviseConfig | None = None,
                     keep_weights: bool | str = False, progress: Any = None, cancel: Any = None) -> Advice:
    """Rank, then advise on the ``k`` best candidates (see the module docstring).

    Raises:
        InvalidInput: a bad ``k``, ``depths`` across models, or nothing the ranking could score (its
        reasons in the message); what :func:`reuse.rank.rank` and :func:`reuse.advise.advise` raise.
    """
    from reuse.advise.plan import parse_depths, plan_candidates
    from reuse.rank import rank

    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_SHORTLIST:
        raise InvalidInput(f"invalid shortlist {k!r}: expected an integer 1..{MAX_SHORTLIST}")
    if (base is None) == (models is None):
        raise InvalidInput("a shortlist needs either a base (--from) or --models, not both")
    if base is not None and depths is not None:
        # The pool the ranking picks from: the depths asked for (0 is scratch, always trained).
        pool = set(parse_depths(depths, plan_candidates(store, base, scopes=scopes, match=match,
                                                        blocks=blocks).max_depth, str(base))) - {0}
    elif depths is not None:
        raise InvalidInput("--depths picks among one base's candidates; with --models give --scopes or "
                           "--blocks")
    else:
        pool = None
    config = config or AdviseConfig()
    spec = head or HeadSpec()
    ranking = rank(store, train_part(data, val, spec, classes, regression, config),
                   models=str(store.resolve(base)) if base is not None else models, scopes=scopes,
                   blocks=blocks, match=match, metric=metric, progress=progress, cancel=cancel)
    pool_cands = [c for c in ranking.candidates if pool is None or c.depth in pool]
    if not pool_cands:
        why = "; ".join(f"{n.model}:{n.version}: {n.reason}" for n in ranking.not_ranked[:5]) or "no cut"
        raise InvalidInput(f"nothing to shortlist: the ranking scored no candidate ({why})")
    top, skipped = pool_cands[:k], pool_cands[k:]
    groups: dict[str, list[int]] = {}
    for c in top:
        groups.setdefault(f"{c.model}:{c.version}", []).append(c.depth)
    advices = []
    for i, (ref, ds) in enumerate(groups.items()):
        advices.append(advise(store, ref, data, val=val, head=spec, classes=classes, regression=regression,
                              depths=sorted(ds) + ([0] if i == 0 else []), scopes=scopes, match=match,
                              blocks=blocks, config=config, keep_weights=keep_weights, progress=progress,
                              cancel=cancel))
        if advices[-1].stopped == "cancelled":
            break
    out = advices[0] if len(advices) == 1 else _joined(advices, config)
    out.shortlist = {"k": k, "metric": list(ranking.metric), "ranked": len(ranking.candidates),
                     "models": list(groups), "trained": [_entry(c) for c in top],
                     "skipped": [_entry(c) for c in skipped], "baseline": _entry(ranking.baseline),
                     "not_ranked": [n.to_dict() for n in ranking.not_ranked],
                     "seconds": round(ranking.seconds, 3)}
    out.settings = {**out.settings, "shortlist": k, "models": models, "metric": metric}
    return out


def _joined(advices: list[Advice], config: AdviseConfig) -> Advice:
    """One advice over the rows of several bases' advice runs (see the module docstring)."""
    first = advices[0]
    rows: list[CandidateResult] = []
    kept: dict[Candidate, Any] = {}
    owner: dict[Candidate, tuple[Advice, Candidate]] = {}
    for a in advices:
        for r in a.rows:
            c = BaseCandidate(r.candidate.depth, r.candidate.finetune, a.base)
            extra = {**r.extra, "base": a.base}
            rows.append(CandidateResult(c, r.scores, r.seconds, r.trainable_params, extra))
            owner[c] = (a, r.candidate)
            if r.candidate in a.kept:
                kept[c] = a.kept[r.candidate]
    rows.sort(key=lambda r: (r.candidate.complexity, r.candidate.base))  # type: ignore[attr-defined]
    rec = None
    if any(r.scores for r in rows):
        rec = recommend(rows, higher_is_better=first.higher_is_better,
                        min_margin=noise_margin(config, rows, first.higher_is_better, first.val_samples))
    stopped = next((a.stopped for a in advices if a.stopped == "cancelled"), None) or next(
        (a.stopped for a in advices if a.stopped), None)
    not_run = [(BaseCandidate(c.depth, c.finetune, a.base), s) for a in advices for c, s in a.not_run]
    joined = replace(first, base=", ".join(a.base for a in advices), rows=rows, recommendation=rec,
                     not_run=not_run, stopped=stopped, seconds=sum(a.seconds for a in advices),
                     warnings=[w for a in advices for w in a.warnings], kept=kept, kept_seeds=[], parts=owner)
    return joined


def part_of(advice: Advice) -> Advice:
    """The advice to register from: ``advice`` itself, or for a shortlist across models the base's own
    advice run with its recommendation set to the joined choice."""
    if not advice.parts or advice.recommendation is None:
        return advice
    own, cand = advice.parts[advice.recommendation.choice.candidate]
    row = next(r for r in own.rows if r.candidate == cand)
    rec = Recommendation(row, advice.recommendation.reuse_helps, advice.recommendation.reason)
    return replace(own, recommendation=rec, shortlist=advice.shortlist, parts={})
