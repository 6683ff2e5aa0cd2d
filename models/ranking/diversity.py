"""Diversity: maximal marginal relevance over the stored lists as the similarity."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from models.ranking.config import RankingConfig
from models.ranking.source import Lists

K = TypeVar("K", bound=Hashable)


def neighbour_similarity(
    lists: Mapping[K, Sequence[tuple[K, float]]],
) -> Callable[[K, K], float]:
    """sim(a, b): the stored score of b in a's list or of a in b's (the larger), else 0."""
    table = {key: dict(neighbours) for key, neighbours in lists.items()}
    empty: dict[K, float] = {}

    def similarity(a: K, b: K) -> float:
        return max(table.get(a, empty).get(b, 0.0), table.get(b, empty).get(a, 0.0))

    return similarity


def diversify(
    keys: Sequence[K],
    scores: Sequence[float],
    similarity: Callable[[K, K], float],
    k: int,
    config: RankingConfig,
) -> list[int]:
    """Indices of up to ``k`` items in MMR order (``keys`` sorted by score, best first)."""
    n = len(keys)
    return mmr(n, lambda best: [similarity(keys[i], keys[best]) for i in range(n)], k, config)


def mmr(
    n: int, similar_to: Callable[[int], Sequence[float]], k: int, config: RankingConfig
) -> list[int]:
    """MMR over ``n`` items ranked best first: indices of up to ``k`` of them, in order.

    ``similar_to(j)[i]``: similarity of item i to item j (read once per chosen j).
    """
    if n == 0 or k <= 0:
        return []
    # Relevance enters MMR by rank, 1 for the best down towards 0: scale-free, so freshness
    # factors that spread scores 20-fold cannot let the redundancy term swamp relevance.
    lam = 1.0 - config.diversity
    penalty = 1.0 - lam
    relevance = [lam * (1.0 - i / n) for i in range(n)]
    threshold = config.duplicate_threshold
    remaining = list(range(n))
    redundancy = [0.0] * n
    chosen: list[int] = []
    while remaining and len(chosen) < k:
        best, best_value = -1, -math.inf
        for i in remaining:
            if redundancy[i] >= threshold:
                continue  # a near-duplicate of a chosen item: only used to fill
            value = relevance[i] - penalty * redundancy[i]
            if value > best_value:  # strict: ties keep the better-scored (earlier) item
                best, best_value = i, value
        if best < 0:
            break
        chosen.append(best)
        remaining.remove(best)
        similar = similar_to(best)
        for i in remaining:
            if similar[i] > redundancy[i]:
                redundancy[i] = similar[i]
    # Only near-duplicates left: fill with them in score order rather than leave a gap.
    chosen.extend(remaining[: k - len(chosen)])
    return chosen


def similarity_matrix(keys: Sequence[int], lists: Lists) -> list[list[float]]:
    """``sim[i][j]``: the stored score of ``keys[j]`` in ``keys[i]``'s list or the reverse
    (the larger), else 0 -- :func:`neighbour_similarity` for a whole pool at once."""
    n = len(keys)
    if n == 0:
        return []
    pool = np.asarray(keys, dtype=np.int64)
    sorter = np.argsort(pool)
    ordered = pool[sorter]
    found = np.asarray(lists.neighbours, dtype=np.int64)
    owner = np.repeat(np.arange(n), lists.counts)
    position = np.minimum(np.searchsorted(ordered, found), n - 1)
    hit = ordered[position] == found
    matrix = np.zeros((n, n))
    matrix[owner[hit], sorter[position[hit]]] = lists.scores[hit]
    result: list[list[float]] = np.maximum(matrix, matrix.T).tolist()
    return result
