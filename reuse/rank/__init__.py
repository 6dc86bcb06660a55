"""``reuse rank``: which stored network, and which of its layers, to reuse for new labels, in seconds.

Every candidate cut of every matching stored model is scored from the features of one forward pass per
model, without training, and ranked against the same scores on the raw inputs.

Public API::

    rank(store, data, *, models=None, scopes=None, blocks=None, match="full", metric=None, regression=None,
         budget_seconds=None, memory_mb=None, rows=None, progress=None, cancel=None) -> Ranking
    reuse.rank.scores: logme, knn_accuracy, sfda, score_all (pure NumPy)
    reuse.rank.plot.plot_ranking(ranking, path) -> Path   (imports matplotlib)

The CLI (``reuse rank``), the service (``Service.rank``), the ``rank`` job kind and ``advise --shortlist``
call these.
"""

from __future__ import annotations

from reuse.rank.ranking import ModelRanked, RankStarted, rank
from reuse.rank.result import NotRanked, Ranking, Scored

__all__ = ["ModelRanked", "NotRanked", "RankStarted", "Ranking", "Scored", "rank"]
