"""The reuse advisor: measure how many layers to reuse, and whether to reuse at all.

Public API::

    advise(store, base_ref, data, *, val=None, head=None, classes=None, regression=False, depths=None,
           scopes=None, match="full", config=AdviseConfig(), keep_weights=False, progress=None,
           cancel=None) -> Advice
    recommend(results, *, higher_is_better=True, min_margin=0.005) -> Recommendation
    reuse.advise.register.register_choice(store, advice, name, *, data, val, description=None,
                                          class_names=None) -> ModelInfo
    reuse.advise.plot.plot_advice(advice, path) -> Path   (imports matplotlib)

The CLI, the service (``Service.advise``) and the ``advise`` job kind call these.
"""

from __future__ import annotations

from reuse.advise.advice import Advice, AdviseConfig, advise
from reuse.advise.events import AdviceEvent, AdviceFinished, AdviceStarted, RunFinished, RunProgress
from reuse.advise.plan import CandidatePlan, DepthPlan, plan_candidates
from reuse.advise.recommend import Candidate, CandidateResult, Recommendation, recommend

__all__ = [
    "Advice", "AdviceEvent", "AdviceFinished", "AdviceStarted", "AdviseConfig", "Candidate", "CandidatePlan",
    "CandidateResult", "DepthPlan", "Recommendation", "RunFinished", "RunProgress", "advise",
    "plan_candidates", "recommend",
]
