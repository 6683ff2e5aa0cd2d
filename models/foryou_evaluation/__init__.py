"""Offline replay of "Recommended for you" on MIND impressions (no Redis, no Flask).

Two protocols (:mod:`~models.foryou_evaluation.protocols`, on the impressions of
:mod:`~models.foryou_evaluation.cases`, scored by :mod:`~models.foryou_evaluation.metrics`),
both ranking with the functions the API runs (:mod:`models.ranking`):

1. **Whole corpus**: for each impression whose reader has read at least one corpus article (the
   MIND ``History`` column) and then clicked at least one other corpus article, the history is
   ranked with :func:`models.ranking.recommend.recommend` over the whole corpus, and the
   clicked articles are looked for in the list (hit rate@k, MRR, nDCG@10).
2. **Impression candidates** (the MIND benchmark's protocol): each impression's own shown
   articles (``ID-1`` clicked, ``ID-0`` not), restricted to the corpus and to articles not
   already read, are ordered by each method's score (for for-you,
   :func:`models.ranking.recommend.score_candidates`); candidates a method does not score are
   ordered by its fallback, popularity.
   Usable when at least one clicked and one unclicked candidate remain (AUC needs both).

Baselines on the same impressions: most popular, trending, popular in your sections and random
(seeded). *Most popular* counts, per corpus article, the distinct readers with it in their
``History``: MIND histories are the clicks *before* the impression log's window (the log covers
the days after them), so this uses nothing that happens at or after any replayed impression.
*Trending* is what the API computes from its events, replayed from the log: the clicks of the
impressions *before* this one, in hourly buckets over 24 hours, each weighted ``0.5 ** (age /
6 h)`` (:func:`trending_at`, the API's defaults). The for-you popularity prior is fed one or the
other (``prior_counts``): ``"trending"`` is what the API feeds it, ``"readers"`` the weeks-old
proxy the replay used first. *Popular in your sections* is the prior alone, section affinity
included, without the content neighbours. Read articles are never recommended by any method.

For choosing settings honestly, the usable impressions can be split in two halves by a seeded
shuffle of their ids: choose on ``tune``, report ``test`` (and ``all``, saying so).
"""

from __future__ import annotations

from models.foryou_evaluation.cases import HALVES
from models.foryou_evaluation.metrics import CANDIDATE_METRICS, TABLE_METRICS
from models.foryou_evaluation.protocols import PRIOR_COUNTS, evaluate_foryou

# Re-exported for ``recs evaluate-foryou`` (scripts/foryou_eval_cmd.py).
__all__ = ["CANDIDATE_METRICS", "HALVES", "PRIOR_COUNTS", "TABLE_METRICS", "evaluate_foryou"]
