"""The statistical part of the advisor: from per-seed scores to a recommendation.

Rule: candidates are ordered from simplest to most complex (train from scratch, then reuse 1 layer
frozen, 1 layer fine-tuned, 2 layers frozen, ...). We recommend the simplest candidate that no other
candidate beats by more than the seed-to-seed noise of the two. "Noise" is the larger of the two
candidates' standard deviations across seeds, but never less than ``min_margin`` (with very few seeds a
standard deviation can be zero by luck).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    """One way to build the new network: reuse ``depth`` lower layers, ``frozen`` or fine-tuned."""

    depth: int
    finetune: bool = False

    @property
    def label(self) -> str:
        if self.depth == 0:
            return "scratch"
        return f"reuse {self.depth} " + ("fine-tuned" if self.finetune else "frozen")

    @property
    def complexity(self) -> tuple[int, int]:
        return (self.depth, int(self.finetune))


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    scores: tuple[float, ...]
    seconds: float = 0.0
    trainable_params: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else float("nan")

    @property
    def std(self) -> float:
        n = len(self.scores)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((s - m) ** 2 for s in self.scores) / (n - 1))


@dataclass(frozen=True)
class Recommendation:
    choice: CandidateResult
    reuse_helps: bool
    reason: str


def _noise(a: CandidateResult, b: CandidateResult, min_margin: float) -> float:
    return max(a.std, b.std, min_margin)


def recommend(results: Sequence[CandidateResult], *, higher_is_better: bool = True,
              min_margin: float = 0.005) -> Recommendation:
    """Pick the simplest candidate that no other beats by more than the noise.

    Args:
        results: one entry per candidate, each with its per-seed validation scores.
        higher_is_better: True for accuracy-like metrics, False for losses.
        min_margin: the smallest difference that counts as real.

    Returns:
        The recommendation, whether reuse helps (the choice is not training from scratch), and a
        one-sentence reason with the numbers behind it.

    Raises:
        ValueError: no candidate has a finite score.
    """
    sign = 1.0 if higher_is_better else -1.0
    usable = [r for r in results if r.scores and math.isfinite(r.mean)]
    if not usable:
        raise ValueError("no candidate finished with a finite score")
    usable.sort(key=lambda r: r.candidate.complexity)
    best = max(usable, key=lambda r: sign * r.mean)
    for r in usable:
        beaten_by = [o for o in usable if sign * (o.mean - r.mean) > _noise(r, o, min_margin)]
        if not beaten_by:
            choice = r
            break
    else:  # unreachable: the best candidate is never beaten; kept for clarity
        choice = best
    scratch = next((r for r in usable if r.candidate.depth == 0), None)
    reuse_helps = choice.candidate.depth > 0
    if not reuse_helps:
        reason = (f"reuse does not help here: no reuse candidate beats training from scratch "
                  f"({choice.mean:.4f} ± {choice.std:.4f}) by more than the seed-to-seed noise")
    elif scratch is None:
        reason = f"{choice.candidate.label} is the simplest candidate within the noise of the best"
    else:
        reason = (f"{choice.candidate.label} ({choice.mean:.4f} ± {choice.std:.4f}) beats training from "
                  f"scratch ({scratch.mean:.4f} ± {scratch.std:.4f}) by more than the noise, and no more "
                  f"complex candidate beats it by more than the noise")
    return Recommendation(choice, reuse_helps, reason)
