"""The incremental index: a fitted model's neighbour lists, kept exact under upserts and deletes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from models.artifact import LoadedModel, read_pools
from models.incremental.export import live_model
from models.incremental.fitted import vectorize_articles
from models.incremental.matrix import MERGE_MIN_ROWS, BlendedRows, grown
from models.incremental.pools import CandidatePools
from models.model import RelatedModel, pool_min_score, pool_size, pool_spare
from models.records import Article
from models.rerank import rerank


class IncrementalIndex:
    """A fitted model's neighbour lists, kept exact under upserts and deletes.

    Parameters
    ----------
    model : RelatedModel
        A fitted (or loaded) model. Its vectorisers and SVD components are used as they are,
        never refitted; the model object itself is not modified.
    spare : int, optional
        Candidates stored beyond each pool, so that a delete rarely needs a recomputation
        (default: a quarter of the pool, at least 8).

    Notes
    -----
    Every article has a row; rows are appended and never reused. A deleted article's row is
    tombstoned; an edited article (an upsert of a known id) is tombstoned and re-added as a new
    row, so an edit moves the article to the end of the tie order (ties go to the lower row,
    exactly as in a full build over the live articles in row order).

    Each row's exact candidate pool (``P``: the re-ranking pool, or ``k``) is kept by
    :class:`~models.incremental.pools.CandidatePools`, over the blended rows of
    :class:`~models.incremental.matrix.BlendedRows`. The final list is the model's ``rerank``
    (or the first ``k``) of the pool, recomputed only for rows whose pool changed.

    Not thread-safe: callers serialise writes (and reads that race with them).
    """

    def __init__(self, model: RelatedModel, *, spare: int | None = None) -> None:
        self.model = model
        cfg = model.cfg
        self.k = cfg.k
        self.pool = pool_size(model)
        self.spare = pool_spare(self.pool) if spare is None else spare
        if self.spare < 0:
            raise ValueError(f"spare must be >= 0, got {self.spare}")
        self.rerank_active = bool(model.rerank_active_)
        self._components: np.ndarray | None = None
        if self.rerank_active:
            if model.svd_components_ is None:
                raise ValueError("the model re-ranks but has no SVD components")
            # Converted once: RelatedModel.latent_vectors converts them on every call.
            self._components = model.svd_components_.T.astype(np.float64)

        base = sp.csr_matrix(model.blended_matrix(), dtype=np.float64)
        base.eliminate_zeros()
        base.sort_indices()
        n = base.shape[0]
        self._n = n
        self._ids: list[str] = list(model.ids_)
        self._index = {article_id: row for row, article_id in enumerate(self._ids)}
        self._next_key = n
        capacity = max(2 * n, n + MERGE_MIN_ROWS)
        self._alive = np.zeros(capacity, dtype=bool)
        self._alive[:n] = True
        # A stable number per article id: an edit keeps it, so "did this list change" compares
        # articles, not rows.
        self._key = np.full(capacity, -1, dtype=np.int64)
        self._key[:n] = np.arange(n)
        self._latent: np.ndarray | None = None
        if self.rerank_active:
            latent = model.latent_ if model.latent_ is not None else self._project(base)
            self._latent = grown(np.asarray(latent, dtype=np.float32), capacity, 0.0)
        self._neighbours = np.full((capacity, self.k), -1, dtype=np.int32)
        self._scores = np.full((capacity, self.k), np.nan, dtype=np.float32)
        # What to_loaded needs to write the live corpus back as a model directory: the rows the
        # model came with, the articles appended since (by row) and how many changes were made.
        self._initial_rows = n
        self._added: dict[int, Article] = {}
        self.upserts = 0
        self.deletes = 0

        self._rows = BlendedRows(base)
        self._pools = CandidatePools(
            self._rows, capacity, pool=self.pool, spare=self.spare, min_score=pool_min_score(model)
        )
        saved = read_pools(model)
        if saved is not None and saved[0].shape[1] >= self._pools.width:
            # The build kept the pools (``recs train --keep-pools``): no exact pass here.
            self._pools.load(*saved)
        else:
            self._pools.build(self._alive[:n])
        if n:
            self._neighbours[:n], self._scores[:n] = self._final_lists(np.arange(n))

    @classmethod
    def from_model(cls, model: RelatedModel, *, spare: int | None = None) -> IncrementalIndex:
        """Index a fitted model: one exact top-``P + spare`` pass over its articles, unless the
        model kept its pools (``fit(keep_pools=True)``) at least that wide."""
        return cls(model, spare=spare)

    # ----------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._index

    @property
    def ids(self) -> list[str]:
        """Live article ids in row order (the order of ties)."""
        return [self._ids[row] for row in np.flatnonzero(self._alive[: self._n])]

    def row(self, article_id: str) -> int:
        """Current row of a live article; ``KeyError`` naming it when unknown."""
        try:
            return self._index[article_id]
        except KeyError:
            raise KeyError(f"unknown article id {article_id!r}") from None

    def neighbours(self, article_id: str, k: int | None = None) -> list[tuple[str, float]]:
        """The current related articles of one article, best first."""
        row = self.row(article_id)
        limit = self.k if k is None else k
        out = []
        for col, score in zip(
            self._neighbours[row, :limit], self._scores[row, :limit], strict=True
        ):
            if col < 0:
                break
            out.append((self._ids[col], float(score)))
        return out

    def lists(self, ids: Iterable[str] | None = None) -> dict[str, list[tuple[str, float]]]:
        """Current lists of the given articles (every live article when ``ids`` is None)."""
        wanted = self.ids if ids is None else ids
        return {article_id: self.neighbours(article_id) for article_id in wanted}

    def snapshot(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Live ids, neighbours as positions in that id list (-1 padded) and scores."""
        rows = np.flatnonzero(self._alive[: self._n])
        position = np.full(self._n + 1, -1, dtype=np.int32)
        position[rows] = np.arange(rows.size, dtype=np.int32)
        # Index -1 (padding) reads the sentinel slot at the end, which stays -1.
        neighbours = position[self._neighbours[rows]]
        return [self._ids[r] for r in rows], neighbours, self._scores[rows].copy()

    def vectorize(self, article: Article) -> sp.csr_matrix:
        """The article's blended row (1 x features) under the fitted model."""
        return vectorize_articles(self.model, [article])

    # ----------------------------------------------------------------------------- updates
    def upsert(self, article: Article) -> set[str]:
        """Add or replace an article; return the ids whose final list changed (itself included).

        An unknown word or tag simply carries no weight (the vocabulary is the fitted one); an
        article with no known word or tag gets no neighbours and appears in no list.
        """
        vector = self.vectorize(article)
        touched: set[int] = set()
        old = self._index.get(article.id)
        if old is not None:
            key = int(self._key[old])
            touched |= self._tombstone(old)
        else:
            key = self._next_key
            self._next_key += 1

        scores = self._rows.scores_against_all(vector)
        row = self._append(vector, article.id, key)
        if old is not None:
            self._added.pop(old, None)
        self._added[row] = article
        touched |= self._pools.insert(row, scores, self._alive)
        touched.add(row)
        changed = self._refresh(touched)
        self._maybe_merge()
        self.upserts += 1
        return {self._ids[r] for r in changed} | {article.id}

    def delete(self, article_id: str) -> set[str]:
        """Remove an article from every list; return the ids of the lists that changed.

        The deleted id itself is not in the result: its own list is gone.
        """
        row = self.row(article_id)
        changed = self._refresh(self._tombstone(row))
        self._added.pop(row, None)
        self._maybe_merge()
        self.deletes += 1
        return {self._ids[r] for r in changed}

    # ----------------------------------------------------------------------------- export
    def to_loaded(self, base: LoadedModel, *, updated_at: datetime | None = None) -> LoadedModel:
        """The live corpus as a model (:func:`~models.incremental.export.live_model`), to write
        back to a directory with :func:`~models.incremental.export.save_incremental`.

        ``base`` is the loaded model this index was built from (its articles fill the rows the
        model came with); ``updated_at`` (default: now) is when the changes were made.
        """
        n0 = self._initial_rows
        if len(base.articles) != n0 or base.model.ids_ != self._ids[:n0]:
            raise ValueError("base is not the model this index was built from")
        rows = np.flatnonzero(self._alive[: self._n])
        return live_model(
            base,
            self.model,
            self.snapshot(),
            kept_rows=rows[rows < n0],
            added=[self._added[int(r)] for r in rows[rows >= n0]],
            latent=None if self._latent is None else self._latent[rows].copy(),
            changes=(self.upserts, self.deletes),
            updated_at=updated_at,
        )

    # ----------------------------------------------------------------------------- internals
    def _tombstone(self, row: int) -> set[int]:
        """Retire a row and take it out of every prefix; return the rows whose pool changed."""
        del self._index[self._ids[row]]
        self._alive[row] = False
        self._rows.retire(row)
        self._neighbours[row] = -1
        self._scores[row] = np.nan
        return self._pools.remove(row, self._alive)

    def _append(self, vector: sp.csr_matrix, article_id: str, key: int) -> int:
        """Give the article a new row (the vector joins the blended rows' delta)."""
        row = self._n
        if row == self._alive.size:
            self._grow(2 * row)
        self._n += 1
        self._ids.append(article_id)
        self._index[article_id] = row
        self._alive[row] = True
        self._key[row] = key
        self._pools.add_row()
        if self._latent is not None:
            self._latent[row] = self._project(vector)[0]
        self._rows.append(vector)
        return row

    def _project(self, rows: sp.csr_matrix) -> np.ndarray:
        """``RelatedModel.latent_vectors`` with the components converted once."""
        assert self._components is not None
        return normalize(np.asarray(rows @ self._components)).astype(np.float32)

    def _refresh(self, rows: set[int]) -> set[int]:
        """Recompute the final lists of live ``rows``; return those whose list changed."""
        live = np.array(sorted(r for r in rows if self._alive[r]), dtype=np.int64)
        if live.size == 0:
            return set()
        old_ids = self._neighbours[live]
        old_scores = self._scores[live]
        new_ids, new_scores = self._final_lists(live)
        self._neighbours[live] = new_ids
        self._scores[live] = new_scores
        same_keys = np.where(old_ids >= 0, self._key[old_ids], -1) == np.where(
            new_ids >= 0, self._key[new_ids], -1
        )
        same_scores = (old_scores == new_scores) | (np.isnan(old_scores) & np.isnan(new_scores))
        changed = ~(same_keys & same_scores).all(axis=1)
        return set(live[changed].tolist())

    def _final_lists(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The final lists of ``rows`` from their pools: ``rerank`` or the pool's first ``k``."""
        pools = self._pools
        if self._latent is None:
            return pools.ids[rows, : self.k].copy(), pools.scores[rows, : self.k].astype(np.float32)
        cfg = self.model.cfg
        return rerank(
            pools.ids[rows, : self.pool],
            pools.scores[rows, : self.pool],
            self._latent,
            k=self.k,
            weight=cfg.rerank_weight,
            feedback=cfg.rerank_feedback,
            feedback_weight=cfg.rerank_feedback_weight,
            min_score=cfg.min_score,
            rows=rows,
        )

    def _maybe_merge(self) -> None:
        """Fold the blended rows' delta into their base when it has grown too big."""
        self._rows.maybe_merge(self._alive[: self._n])

    def _grow(self, capacity: int) -> None:
        """Enlarge every per-row array to ``capacity`` rows."""
        self._alive = grown(self._alive, capacity, False)
        self._key = grown(self._key, capacity, -1)
        self._pools.grow(capacity)
        self._neighbours = grown(self._neighbours, capacity, -1)
        self._scores = grown(self._scores, capacity, np.nan)
        if self._latent is not None:
            self._latent = grown(self._latent, capacity, 0.0)
