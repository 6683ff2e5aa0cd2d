"""The score of one pair as a neighbour list ranks it: blended, re-ranked, and its parts.

``RelatedModel.similarity`` gives the blended cosine of any two articles; the stored lists are
ranked by the re-ranked score when re-ranking is on, which depends on the first article's
candidate pool (its latent query is expanded by its best candidates). :class:`ListScorer`
recomputes that pool and score with the build's own functions, so for a pair in ``a``'s stored
list the score is that list's number, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.model import RelatedModel, pool_min_score, pool_size
from models.rerank import combined, pool_scores_and_query


@dataclass(frozen=True)
class ListScore:
    """Where ``b`` would stand in ``a``'s list: the score, and what it is made of.

    ``score`` is what the lists are ranked by and store (float32): the blended score, or with
    re-ranking ``(1 - rerank_weight) * blended + rerank_weight * latent``. ``blended`` is the
    dot product the build ranks candidates by (``alpha * text + (1 - alpha) * tags``);
    ``latent`` the cosine of ``b``'s latent vector with ``a``'s query (``None`` without
    re-ranking). The score is not symmetric: ``a``'s query is not ``b``'s.
    """

    score: float
    blended: float
    text: float
    tags: float
    latent: float | None
    rerank_weight: float


class ListScorer:
    """Scores pairs of a fitted model as its lists rank them (a's pool is cached per ``a``)."""

    def __init__(self, model: RelatedModel) -> None:
        self.model = model
        # The matrix top_k ranks: float64, duplicates summed, zeros dropped, so each score is
        # summed in column order, as the library sums it.
        blended = sp.csr_matrix(model.blended_matrix(), dtype=np.float64)
        blended.sum_duplicates()
        blended.eliminate_zeros()
        self._blended = blended
        self._blended_t = sp.csr_matrix(blended.T)
        self._latent: np.ndarray | None = None
        if model.rerank_active_:
            latent = model.latent_
            self._latent = model.latent_vectors(blended) if latent is None else latent
        self._queries: dict[int, tuple[np.ndarray, dict[int, float]]] = {}

    def score(self, id_a: str, id_b: str) -> ListScore:
        """The score of ``id_b`` as a neighbour of ``id_a``; ``KeyError`` naming an unknown id."""
        model = self.model
        a, b = model.row(id_a), model.row(id_b)
        pair = model.similarity(id_a, id_b)
        row = self._row_scores(a)
        blended = float(row[b])
        if self._latent is None:
            return ListScore(_stored(blended), blended, pair.text, pair.tags, None, 0.0)
        cfg = model.cfg
        query, pooled = self._pool(a, row)
        if b in pooled:
            final = pooled[b]
        else:
            # Not a candidate of a's pool: the same formula with a's query, as if it were.
            cand = self._latent[np.array([[b]])]
            final = float(combined(np.array([[blended]]), cand, query, cfg.rerank_weight)[0, 0])
        latent = float(np.einsum("bpc,bc->bp", self._latent[np.array([[b]])], query)[0, 0])
        return ListScore(_stored(final), blended, pair.text, pair.tags, latent, cfg.rerank_weight)

    def _row_scores(self, a: int) -> np.ndarray:
        """Blended scores of row ``a`` against every row (CSR product: the library's sums)."""
        product = sp.csr_matrix(self._blended[a] @ self._blended_t)
        out = np.zeros(self._blended.shape[0], dtype=np.float64)
        out[product.indices] = product.data
        return out

    def _pool(self, a: int, row: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
        """``a``'s latent query, and its pool's re-ranked scores by row."""
        cached = self._queries.get(a)
        if cached is not None:
            return cached
        assert self._latent is not None
        model, cfg = self.model, self.model.cfg
        width = pool_size(model)
        # top_k's pool: score > 0 and >= the floor, self excluded, ties by the lower row.
        valid = (row > 0) & (row >= pool_min_score(model))
        valid[a] = False
        cand = np.flatnonzero(valid)
        order = np.lexsort((cand, -row[cand]))[:width]
        ids = np.full((1, width), -1, dtype=np.int32)
        scores = np.full((1, width), np.nan, dtype=np.float64)
        ids[0, : order.size] = cand[order]
        scores[0, : order.size] = row[cand[order]]
        final, query = pool_scores_and_query(
            ids,
            scores,
            self._latent,
            np.array([a]),
            weight=cfg.rerank_weight,
            feedback=cfg.rerank_feedback,
            feedback_weight=cfg.rerank_feedback_weight,
        )
        pooled = {int(i): float(s) for i, s in zip(ids[0], final[0], strict=True) if i >= 0}
        self._queries[a] = (query, pooled)
        return self._queries[a]


def _stored(score: float) -> float:
    """A score at the precision the lists store (float32)."""
    return float(np.float32(score))
