"""Metrics of one ranked list (protocol 1) and of one impression's candidates (protocol 2)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEPTH = 100  # list length for MRR (a click below it counts 0)
CUTOFFS = (1, 5, 10)
# Impression lists hold ~3.6 corpus candidates on the MIND sample: hit@1 and hit@3 say more
# than hit@10 would.
CANDIDATE_CUTOFFS = (1, 3)


def ranked_metrics(ranked: Sequence[str], clicked: frozenset[str]) -> dict[str, float]:
    """hit@k, MRR (to :data:`DEPTH`) and nDCG@10 of one ranked list against its clicks."""
    hits = [item in clicked for item in ranked[:DEPTH]]
    first = next((i for i, hit in enumerate(hits) if hit), None)
    out = {f"hit@{k}": float(any(hits[:k])) for k in CUTOFFS}
    out["mrr"] = 0.0 if first is None else 1.0 / (first + 1)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    dcg = float(sum(d for d, hit in zip(discounts, hits[:10], strict=False) if hit))
    ideal = float(discounts[: min(10, len(clicked))].sum())
    out["ndcg@10"] = dcg / ideal
    return out


def _ndcg(labels: Sequence[int], k: int) -> float:
    dcg = sum(y / math.log2(i + 2) for i, y in enumerate(labels[:k]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, sum(labels))))
    return dcg / ideal


def candidate_metrics(labels: Sequence[int]) -> dict[str, float]:
    """Metrics of one impression's candidates in ranked order (1: clicked, 0: not).

    MIND's definitions: MRR averages 1/rank over *all* clicks; nDCG with binary gains; AUC the
    share of (clicked, unclicked) pairs ranked the right way round (the order is strict, so
    there are no ties).
    """
    positives = sum(labels)
    negatives = len(labels) - positives
    out = {f"hit@{k}": float(any(labels[:k])) for k in CANDIDATE_CUTOFFS}
    out["mrr"] = sum(y / (i + 1) for i, y in enumerate(labels)) / positives
    out["ndcg@5"] = _ndcg(labels, 5)
    out["ndcg@10"] = _ndcg(labels, 10)
    # Pairs in order: each unclicked candidate counts the clicked ones still below it.
    below, correct = positives, 0
    for y in labels:
        if y:
            below -= 1
        else:
            correct += below
    out["auc"] = 1.0 - correct / (positives * negatives)
    return out


def mean_metrics(rows: list[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Each metric averaged over the rows (0 when there are none)."""
    if not rows:
        return {name: 0.0 for name in names}
    return {name: float(np.mean([row[name] for row in rows])) for name in names}


TABLE_METRICS = (*(f"hit@{k}" for k in CUTOFFS), "mrr", "ndcg@10")
CANDIDATE_METRICS = (*(f"hit@{k}" for k in CANDIDATE_CUTOFFS), "mrr", "ndcg@5", "ndcg@10", "auc")
