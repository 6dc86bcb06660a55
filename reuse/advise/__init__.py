"""The reuse advisor: measure how many layers to reuse, and whether to reuse at all."""

from __future__ import annotations

from reuse.advise.recommend import Candidate, CandidateResult, Recommendation, recommend

__all__ = ["Candidate", "CandidateResult", "Recommendation", "recommend"]
