"""Re-ranking of exact candidate pools by ``(1 - w) * blended + w * latent cosine``.

Shared by the full build (:class:`~models.model.RelatedModel`), the incremental index and the
score of one pair (:mod:`models.pair_score`), so a pair's score is the very number its
neighbour list stores.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.preprocessing import normalize

# Rows re-ranked at a time: bounds the (rows x pool x components) working array to ~60 MB.
RERANK_BLOCK_ROWS = 1024


def rerank(
    pool_ids: np.ndarray,
    pool_scores: np.ndarray,
    latent: np.ndarray,
    *,
    k: int,
    weight: float,
    feedback: int,
    feedback_weight: float,
    min_score: float = 0.0,
    rows: np.ndarray | None = None,
    progress: Callable[[int], Any] | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder exact candidate pools by ``(1 - w) * blended + w * latent cosine``.

    The latent query is the article's own latent vector plus ``feedback_weight`` times the mean
    of its ``feedback`` best first-pass candidates (pseudo-relevance feedback), renormalised.
    ``rows`` gives each pool row's own row in ``latent`` (default: the same row).
    ``threads``: chunks of rows re-ranked at once (each row's answer depends on that row only,
    so the result is the same bits whatever the count).
    """
    n, pool = pool_ids.shape
    own = np.arange(n) if rows is None else rows
    out_ids = np.full((n, k), -1, dtype=np.int32)
    out_scores = np.full((n, k), np.nan, dtype=np.float32)

    def chunk(start: int) -> int:
        stop = min(start + RERANK_BLOCK_ROWS, n)
        ids = pool_ids[start:stop]
        final, _ = pool_scores_and_query(
            ids,
            pool_scores[start:stop],
            latent,
            own[start:stop],
            weight=weight,
            feedback=feedback,
            feedback_weight=feedback_weight,
        )
        final = np.where(final >= min_score, final, -np.inf)
        order = _order(final, ids)[:, :k]
        chosen = np.take_along_axis(final, order, axis=1)
        keep = np.isfinite(chosen)
        out_ids[start:stop, : order.shape[1]] = np.where(
            keep, np.take_along_axis(ids, order, axis=1), -1
        )
        out_scores[start:stop, : order.shape[1]] = np.where(keep, chosen, np.nan)
        return stop - start

    starts = range(0, n, RERANK_BLOCK_ROWS)
    if threads <= 1 or len(starts) <= 1:
        for start in starts:
            done = chunk(start)
            if progress is not None:
                progress(done)
        return out_ids, out_scores
    # numpy's einsum, gathers and sorts release the GIL: the re-ranking was a single-threaded
    # 3.9 s of a 32 s build at 50k while the other core idled. Chunks write disjoint rows.
    with ThreadPoolExecutor(max_workers=threads) as executor:
        for done in executor.map(chunk, starts):
            if progress is not None:
                progress(done)
    return out_ids, out_scores


def pool_scores_and_query(
    ids: np.ndarray,
    scores: np.ndarray,
    latent: np.ndarray,
    own: np.ndarray,
    *,
    weight: float,
    feedback: int,
    feedback_weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-ranked scores of a block of pools (``-inf`` at padding), and each row's latent query.

    ``ids``/``scores``: the pools (-1 / NaN padded), ``own``: each pool's own row in ``latent``.
    """
    valid = ids >= 0
    blended = np.where(valid, scores, 0.0)
    cand = latent[np.where(valid, ids, 0)]  # (b, pool, c)
    query = latent[own]  # (b, c)
    first = combined(blended, cand, query, weight)
    first = np.where(valid, first, -np.inf)
    if feedback <= 0 or feedback_weight <= 0:
        return first, query
    best = _order(first, ids)[:, :feedback]
    best_valid = np.take_along_axis(valid, best, axis=1)[..., None]
    picked = np.take_along_axis(cand, best[..., None], axis=1) * best_valid
    mean = picked.sum(axis=1) / np.maximum(best_valid.sum(axis=1), 1)
    query = normalize(query + feedback_weight * mean)
    final = combined(blended, cand, query, weight)
    return np.where(valid, final, -np.inf), query


def combined(blended: np.ndarray, cand: np.ndarray, query: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - w) * blended + w * latent cosine`` of candidates ``cand`` (b, p, c) with the
    queries (b, c): one expression, so every caller computes the same bits."""
    return (1.0 - weight) * blended + weight * np.einsum("bpc,bc->bp", cand, query)


def _order(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per-row column order by descending score, ties by lower article row."""
    tie = np.where(ids >= 0, ids, np.iinfo(np.int32).max).astype(np.int64)
    return np.lexsort((tie, -scores), axis=-1)
