"""Ranking of "Recommended for you": pure functions, shared by the API and the offline evaluation.

No Flask and no Redis here: the data comes through a :class:`~models.ranking.source.Source`
(the model directory, a store, or Redis), so ``recs evaluate-foryou`` ranks with exactly the
code the API runs. The formula is documented in ``docs/recommendations.md``.

- :mod:`~models.ranking.config`: every knob (:class:`RankingConfig`).
- :mod:`~models.ranking.source`: what ranking reads, and :class:`ModelSource` over lookups.
- :mod:`~models.ranking.candidates`: relevance of a history's neighbours plus the prior.
- :mod:`~models.ranking.freshness`: age damping.
- :mod:`~models.ranking.diversity`: MMR over the stored lists.
- :mod:`~models.ranking.recommend`: the whole ranking, and the fallback fill.

The names below are re-exported for the service and scripts, which import them from here.
"""

from __future__ import annotations

from models.ranking.config import RankingConfig
from models.ranking.recommend import Recommendation, recommend
from models.ranking.source import HistoryLists, Lists, ModelSource, Source

__all__ = [
    "HistoryLists",
    "Lists",
    "ModelSource",
    "RankingConfig",
    "Recommendation",
    "Source",
    "recommend",
]
