"""Incremental updates: upsert and delete articles in a fitted model's neighbour lists.

A newsroom publishes all day: a new story needs its related stories now, must show up in older
stories' boxes where it belongs, and a retracted story must vanish from every box. The
:class:`IncrementalIndex` does this without a retrain. It keeps the fitted vocabulary, IDF and
SVD components, and for every article the *exact* candidate pool of the full build (the top
``P`` blended scores, ties by the lower row, where ``P`` is the re-ranking pool or ``k``), so
that after any sequence of upserts and deletes every list equals a full build over the live
articles with the same fitted vectorisers (:func:`build_with_fitted`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize
from sparse_dot_topn import sp_matmul_topn

from models.artifact import MANIFEST_KEYS, LoadedModel, model_summary, save_model
from models.model import RelatedModel, rerank
from models.records import Article
from models.topk import default_threads, top_k

# Delta rows are merged into the frozen base (and its transpose rebuilt) once they exceed this
# share of the base: the rebuild is O(nnz), so merging rarely keeps upserts cheap on average.
MERGE_FRACTION = 0.1
# ... but never for fewer delta rows than this: small corpora would otherwise merge constantly.
MERGE_MIN_ROWS = 1024
# Deleted rows still in the base widen every pool refill's library top-n by one each; purging
# them rebuilds the base, so it is done once this many have piled up.
MAX_DEAD_IN_BASE = 512
# Pools refilled per multiplication: bounds the exact delta product to (rows x delta rows).
REFILL_BLOCK_ROWS = 256
# Rows per multiplication when the index is built (there is no delta yet).
BUILD_BLOCK_ROWS = 4096

_EMPTY_ROWS = np.zeros(0, dtype=np.int32)


def pool_size(model: RelatedModel) -> int:
    """Candidates kept per article: the re-ranking pool when re-ranking is active, else ``k``."""
    cfg = model.cfg
    return max(cfg.k, cfg.rerank_pool) if model.rerank_active_ else cfg.k


def pool_min_score(model: RelatedModel) -> float:
    """Score floor of the candidate pool (re-ranking applies ``min_score`` to the final score)."""
    return 0.0 if model.rerank_active_ else model.cfg.min_score


def vectorize_articles(model: RelatedModel, articles: Sequence[Article]) -> sp.csr_matrix:
    """Blended rows of articles under the model's fitted vocabulary, IDF and tag weights."""
    text = model.text_.transform([a.title for a in articles], [a.body for a in articles])
    tags = model.tags_.transform([a.tags for a in articles])
    alpha = model.cfg.alpha
    # The same expression as RelatedModel.blended_matrix, so the rows are bit-identical to it.
    blended = sp.csr_matrix(
        sp.hstack([math.sqrt(alpha) * text, math.sqrt(1.0 - alpha) * tags], format="csr"),
        dtype=np.float64,
    )
    # alpha = 0 or 1 stores zeros, and the top-k library misreads stored zeros.
    blended.eliminate_zeros()
    blended.sort_indices()
    return blended


def build_with_fitted(
    model: RelatedModel, articles: Sequence[Article]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Full exact build over ``articles`` (in this row order) with the model's fitted state.

    This is what ``RelatedModel.fit`` computes, except that the vocabulary, IDF, tag weights and
    SVD components are the model's instead of refitted: the reference for incremental updates.
    Returns the ids, neighbour rows (int32, -1 padded) and scores (float32, NaN padded).
    """
    ids = [a.id for a in articles]
    if len(set(ids)) != len(ids):
        raise ValueError("article ids must be unique")
    k = model.cfg.k
    if not articles:
        return ids, np.full((0, k), -1, np.int32), np.full((0, k), np.nan, np.float32)
    blended = vectorize_articles(model, articles)
    pool_ids, pool_scores = top_k(blended, pool_size(model), min_score=pool_min_score(model))
    if not model.rerank_active_:
        return ids, pool_ids[:, :k].copy(), pool_scores[:, :k].astype(np.float32)
    cfg = model.cfg
    neighbours, scores = rerank(
        pool_ids,
        pool_scores,
        model.latent_vectors(blended),
        k=k,
        weight=cfg.rerank_weight,
        feedback=cfg.rerank_feedback,
        feedback_weight=cfg.rerank_feedback_weight,
        min_score=cfg.min_score,
    )
    return ids, neighbours, scores


def unknown_share(model: RelatedModel, articles: Sequence[Article]) -> dict[str, float]:
    """Share of the articles' words and tags that carry no weight under the fitted model.

    ``words``: of the title and body tokens (after lower-casing and stop words), those not in
    the fitted vocabulary; ``tags``: of the normalised tags, those the tag vocabulary lacks.
    Pruning at the build (``text_min_df``, ``text_max_df``) leaves some words out of every
    article, so compare with the build's own articles: the difference is what a retrain would
    learn (docs/incremental.md). 0 when there is nothing to count.
    """
    text = model.text_
    analyze = CountVectorizer(
        lowercase=True,
        stop_words=text.stop_words,
        strip_accents=text.strip_accents,
        token_pattern=text.token_pattern,
        ngram_range=(1, text.ngram_max),
    ).build_analyzer()
    words = known_words = tags = known_tags = 0
    vocabulary, tag_vocabulary = text.vocabulary_, model.tags_.vocabulary_
    for article in articles:
        for term in analyze(f"{article.title}\n{article.body}"):
            words += 1
            known_words += term in vocabulary
        for tag in model.tags_.analyze(article.tags, tag_vocabulary):
            tags += 1
            known_tags += tag in tag_vocabulary
    return {
        "words": 1.0 - known_words / words if words else 0.0,
        "tags": 1.0 - known_tags / tags if tags else 0.0,
    }


def save_incremental(loaded: LoadedModel, path: str | Path) -> dict[str, Any]:
    """Save :meth:`IncrementalIndex.to_loaded`'s model to ``path``; return the manifest.

    A model updated in place stays the model it was: same version id, build time and
    ``source_as_of`` (the update writer's replay point), with the manifest's ``incremental``
    block (and any other key ``save_model`` does not write itself) carried over.
    """
    manifest = loaded.manifest
    created = manifest.get("created_at")
    as_of = manifest.get("source_as_of")
    return save_model(
        loaded.model,
        loaded.articles,
        path,
        created_at=datetime.fromisoformat(created) if created else None,
        source_as_of=datetime.fromisoformat(as_of) if as_of else None,
        version=loaded.version,
        extra={key: value for key, value in manifest.items() if key not in MANIFEST_KEYS},
    )


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

    Each row stores an exact prefix of its ranking of live rows (blended score, ties by the
    lower row): at most ``P + spare`` candidates, and always at least the ``P`` of its pool
    (``P`` is the re-ranking pool, or ``k``) unless every candidate is stored. A new row enters
    every prefix it beats; a deleted row leaves every prefix that holds it (found through a
    reverse index), the next stored candidate moving up into the pool. Only a prefix that falls
    below ``P`` is recomputed, by one blocked multiplication against the live rows. The final
    list is the model's ``rerank`` (or the first ``k``) of the pool, recomputed only for rows
    whose pool changed.

    The blended rows are a frozen CSR base with its transpose (for the products of a refill)
    plus an appended delta, merged into the base once it passes 10% of it.

    Not thread-safe: callers serialise writes (and reads that race with them).
    """

    _base: sp.csr_matrix
    _base_t: sp.csr_matrix
    _base_rows: int
    _dead_in_base: int
    _delta_data: np.ndarray
    _delta_indices: np.ndarray
    _delta_indptr: np.ndarray
    _delta_rows: int
    _delta_nnz: int

    def __init__(self, model: RelatedModel, *, spare: int | None = None) -> None:
        self.model = model
        cfg = model.cfg
        self.k = cfg.k
        self.pool = pool_size(model)
        self.spare = max(8, self.pool // 4) if spare is None else spare
        if self.spare < 0:
            raise ValueError(f"spare must be >= 0, got {self.spare}")
        self._width = self.pool + self.spare
        self.rerank_active = bool(model.rerank_active_)
        self._min_pool = pool_min_score(model)
        self._threads = default_threads()
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
        self._features = base.shape[1]
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
        self._pool_ids = np.full((capacity, self._width), -1, dtype=np.int32)
        self._pool_scores = np.full((capacity, self._width), np.nan, dtype=np.float64)
        self._pool_len = np.zeros(capacity, dtype=np.int64)
        # True when the stored prefix holds every candidate the row has.
        self._complete = np.ones(capacity, dtype=bool)
        self._latent: np.ndarray | None = None
        if self.rerank_active:
            latent = model.latent_ if model.latent_ is not None else self._project(base)
            self._latent = _grown(np.asarray(latent, dtype=np.float32), capacity, 0.0)
        self._neighbours = np.full((capacity, self.k), -1, dtype=np.int32)
        self._scores = np.full((capacity, self.k), np.nan, dtype=np.float32)
        self._reverse: list[np.ndarray] = [_EMPTY_ROWS] * n
        # What to_loaded needs to write the live corpus back as a model directory: the rows the
        # model came with, the articles appended since (by row) and how many changes were made.
        self._initial_rows = n
        self._added: dict[int, Article] = {}
        self.upserts = 0
        self.deletes = 0

        self._set_base(base)
        rows = np.arange(n)
        for start in range(0, n, BUILD_BLOCK_ROWS):
            block = rows[start : start + BUILD_BLOCK_ROWS]
            self._store(block, *self._exact_pools(block), reverse=False)
        self._reverse = _reverse_index(self._pool_ids[:n], n)
        if n:
            self._neighbours[:n], self._scores[:n] = self._final_lists(rows)

    @classmethod
    def from_model(cls, model: RelatedModel, *, spare: int | None = None) -> IncrementalIndex:
        """Index a fitted model (one exact top-``P + spare`` pass over its articles)."""
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

        scores = self._scores_against_all(vector)
        row = self._append(vector, article.id, key)
        if old is not None:
            self._added.pop(old, None)
        self._added[row] = article
        touched |= self._insert(row, scores)
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
        """The live corpus as a model, to write back to a directory with :func:`save_incremental`.

        ``base`` is the loaded model this index was built from (its articles fill the rows the
        model came with). The result has the live articles in row order (an edited article
        replaced, a deleted one gone, new ones appended), the index's lists, the same fitted
        vectorisers, SVD components and config, the manifest's counts recomputed and an
        ``"incremental"`` block: upserts and deletes since the last full build (added to the
        base manifest's, so they add up over repeated ``recs upsert`` runs), the article count
        of that build and when the changes were made. Its ``version`` is still the base's.
        The lists are the index's, so a full build over the result's articles with its
        vectorisers gives the same lists.
        """
        model = self.model
        n0 = self._initial_rows
        if len(base.articles) != n0 or base.model.ids_ != self._ids[:n0]:
            raise ValueError("base is not the model this index was built from")
        rows = np.flatnonzero(self._alive[: self._n])
        old_rows, new_rows = rows[rows < n0], rows[rows >= n0]
        added = [self._added[int(r)] for r in new_rows]
        articles = [base.articles[int(r)] for r in old_rows] + added
        ids, neighbours, scores = self.snapshot()

        out = RelatedModel(config=model.config)
        out.ids_ = ids
        out.index_ = {article_id: row for row, article_id in enumerate(ids)}
        out.text_ = model.text_
        out.tags_ = model.tags_
        # Kept rows are copied, not re-vectorised: bit for bit what the index scored with.
        text_parts = [sp.csr_matrix(model.text_matrix_)[old_rows]]
        tag_parts = [sp.csr_matrix(model.tag_matrix_)[old_rows]]
        if added:
            text_parts.append(
                model.text_.transform([a.title for a in added], [a.body for a in added])
            )
            tag_parts.append(model.tags_.transform([a.tags for a in added]))
        out.text_matrix_ = sp.csr_matrix(sp.vstack(text_parts, format="csr"))
        out.tag_matrix_ = sp.csr_matrix(sp.vstack(tag_parts, format="csr"))
        out.neighbours_ = neighbours.astype(np.int32)
        out.scores_ = scores.astype(np.float32)
        out.rerank_active_ = bool(model.rerank_active_)
        out.svd_components_ = model.svd_components_
        out.latent_ = None if self._latent is None else self._latent[rows].copy()

        manifest = copy.deepcopy(base.manifest)
        manifest["counts"] = model_summary(out)
        prior = manifest.get("incremental") or {}
        when = (updated_at or datetime.now(UTC)).astimezone(UTC)
        manifest["incremental"] = {
            "upserts": int(prior.get("upserts", 0)) + self.upserts,
            "deletes": int(prior.get("deletes", 0)) + self.deletes,
            # The corpus the vocabulary and IDF were fitted on: the denominator of drift.
            "base_articles": int(prior.get("base_articles", base.manifest["counts"]["articles"])),
            "updated_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return LoadedModel(model=out, manifest=manifest, articles=articles, path=base.path)

    # ----------------------------------------------------------------------------- internals
    def _tombstone(self, row: int) -> set[int]:
        """Retire a row and take it out of every prefix; return the rows whose pool changed."""
        del self._index[self._ids[row]]
        self._alive[row] = False
        if row < self._base_rows:
            self._dead_in_base += 1
        self._store(
            np.array([row]), np.full((1, self._width), -1), np.full((1, self._width), np.nan)
        )
        self._complete[row] = True
        self._neighbours[row] = -1
        self._scores[row] = np.nan
        holders = np.unique(self._reverse[row])
        self._reverse[row] = _EMPTY_ROWS
        if holders.size == 0:
            return set()
        # Close the gap the row leaves in each holder's prefix: the next candidate moves up.
        ids = self._pool_ids[holders]
        scores = self._pool_scores[holders]
        column = np.argmax(ids == row, axis=1)
        cols = np.arange(self._width)
        source = np.where(cols < column[:, None], cols, np.minimum(cols + 1, self._width - 1))
        ids = np.take_along_axis(ids, source, axis=1)
        scores = np.take_along_axis(scores, source, axis=1)
        ids[:, -1] = -1
        scores[:, -1] = np.nan
        self._pool_ids[holders] = ids
        self._pool_scores[holders] = scores
        self._pool_len[holders] -= 1
        short = holders[~self._complete[holders] & (self._pool_len[holders] < self.pool)]
        for start in range(0, short.size, REFILL_BLOCK_ROWS):
            block = short[start : start + REFILL_BLOCK_ROWS]
            self._store(block, *self._exact_pools(block))
        return set(holders[column < self.pool].tolist())

    def _append(self, vector: sp.csr_matrix, article_id: str, key: int) -> int:
        """Give the article a new row (the vector joins the delta)."""
        row = self._n
        if row == self._alive.size:
            self._grow(2 * row)
        self._n += 1
        self._ids.append(article_id)
        self._index[article_id] = row
        self._alive[row] = True
        self._key[row] = key
        self._reverse.append(_EMPTY_ROWS)
        if self._latent is not None:
            self._latent[row] = self._project(vector)[0]
        nnz = vector.nnz
        need = self._delta_nnz + nnz
        if need > self._delta_data.size:
            size = max(2 * self._delta_data.size, need)
            self._delta_data = _resized(self._delta_data, size)
            self._delta_indices = _resized(self._delta_indices, size)
        if self._delta_rows + 2 > self._delta_indptr.size:
            self._delta_indptr = _resized(self._delta_indptr, 2 * self._delta_indptr.size)
        self._delta_data[self._delta_nnz : need] = vector.data
        self._delta_indices[self._delta_nnz : need] = vector.indices
        self._delta_nnz = need
        self._delta_rows += 1
        self._delta_indptr[self._delta_rows] = need
        return row

    def _project(self, rows: sp.csr_matrix) -> np.ndarray:
        """``RelatedModel.latent_vectors`` with the components converted once."""
        assert self._components is not None
        return normalize(np.asarray(rows @ self._components)).astype(np.float32)

    def _insert(self, row: int, scores: np.ndarray) -> set[int]:
        """Store the new row's prefix and enter it into every prefix it beats.

        Returns the rows whose pool (the first ``P``) changed.
        """
        n_before = scores.size
        own_ids, own_scores = self._select(scores, None)
        length = self._pool_len[:n_before]
        last = self._pool_scores[np.arange(n_before), np.maximum(length - 1, 0)]
        eligible = self._alive[:n_before] & (scores > 0) & (scores >= self._min_pool)
        # The new row has the highest index, so it loses every tie. A complete prefix takes it
        # anywhere; a partial one only where it beats the last stored candidate.
        eligible &= self._complete[:n_before] | (scores > last)
        targets = np.flatnonzero(eligible)
        old_ids = self._pool_ids[targets]
        old_scores = self._pool_scores[targets]
        new_score = scores[targets]
        # Equal scores stay ahead (lower rows); NaN padding compares False and so stays behind.
        position = (old_scores >= new_score[:, None]).sum(axis=1)
        full = self._pool_len[targets] == self._width
        # A full complete prefix that the new row does not enter stops being complete.
        self._complete[targets[full]] = False
        entered = position < self._width
        targets, position, full = targets[entered], position[entered], full[entered]
        old_ids, old_scores, new_score = old_ids[entered], old_scores[entered], new_score[entered]
        cols = np.arange(self._width)
        source = np.maximum(np.where(cols < position[:, None], cols, cols - 1), 0)
        new_ids = np.take_along_axis(old_ids, source, axis=1)
        new_scores = np.take_along_axis(old_scores, source, axis=1)
        new_ids[np.arange(targets.size), position] = row
        new_scores[np.arange(targets.size), position] = new_score
        self._pool_ids[targets] = new_ids
        self._pool_scores[targets] = new_scores
        self._pool_len[targets] = np.minimum(self._pool_len[targets] + 1, self._width)
        # Reverse index: each target gained the new row; a full one lost its last candidate.
        for target, evicted in zip(targets[full].tolist(), old_ids[full, -1].tolist(), strict=True):
            holders = self._reverse[evicted]
            self._reverse[evicted] = holders[holders != target]
        self._reverse[row] = targets.astype(np.int32)
        self._store(np.array([row]), own_ids[None, :], own_scores[None, :])
        return set(targets[position < self.pool].tolist())

    def _store(
        self, rows: np.ndarray, ids: np.ndarray, scores: np.ndarray, *, reverse: bool = True
    ) -> None:
        """Replace whole exact prefixes (their full top ``P + spare``), updating the reverse."""
        for i, row in enumerate(rows.tolist() if reverse else ()):
            old = self._pool_ids[row]
            new = ids[i]
            old_set = set(old[old >= 0].tolist())
            new_set = set(new[new >= 0].tolist())
            for member in old_set - new_set:
                holders = self._reverse[member]
                self._reverse[member] = holders[holders != row]
            for member in new_set - old_set:
                self._reverse[member] = np.append(self._reverse[member], np.int32(row))
        self._pool_ids[rows] = ids
        self._pool_scores[rows] = scores
        length = (np.asarray(ids) >= 0).sum(axis=1)
        self._pool_len[rows] = length
        # A freshly computed prefix shorter than its room holds every candidate there is.
        self._complete[rows] = length < self._width

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
        if self._latent is None:
            return (
                self._pool_ids[rows, : self.k].copy(),
                self._pool_scores[rows, : self.k].astype(np.float32),
            )
        cfg = self.model.cfg
        return rerank(
            self._pool_ids[rows, : self.pool],
            self._pool_scores[rows, : self.pool],
            self._latent,
            k=self.k,
            weight=cfg.rerank_weight,
            feedback=cfg.rerank_feedback,
            feedback_weight=cfg.rerank_feedback_weight,
            min_score=cfg.min_score,
            rows=rows,
        )

    def _scores_against_all(self, vector: sp.csr_matrix) -> np.ndarray:
        """Blended scores of one row against every row so far (dead rows included)."""
        out = np.zeros(self._n, dtype=np.float64)
        if self._base_rows:
            product = sp.csr_matrix(vector @ self._base_t)
            out[product.indices] = product.data
        if self._delta_rows:
            # Each score sums the same products in the same (feature) order as the library's
            # and the base's, so scores are bit-identical to a full build's: ties stay ties.
            dense = vector.toarray().ravel()
            out[self._base_rows :] = self._delta_matrix() @ dense
        return out

    def _select(self, scores: np.ndarray, own: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``P + spare`` of a score vector over live rows: ties by lower row."""
        n = scores.size
        width = self._width
        valid = self._alive[:n] & (scores > 0) & (scores >= self._min_pool)
        if own is not None:
            valid[own] = False
        cand = np.flatnonzero(valid)
        values = scores[cand]
        if cand.size > width:
            # Keep everything tied with the last place, then order exactly.
            threshold = np.partition(values, cand.size - width)[cand.size - width]
            keep = values >= threshold
            cand, values = cand[keep], values[keep]
        order = np.lexsort((cand, -values))[:width]
        ids = np.full(width, -1, dtype=np.int32)
        out = np.full(width, np.nan, dtype=np.float64)
        ids[: order.size] = cand[order]
        out[: order.size] = values[order]
        return ids, out

    def _exact_pools(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``P + spare`` of live ``rows`` (sorted) against every live row."""
        query = self._rows_matrix(rows)
        b = rows.size
        width = self._width
        parts_rows, parts_cols, parts_data = [], [], []
        full = np.zeros(b, dtype=bool)
        row_min = np.full(b, np.inf)
        if self._base_rows:
            # Room for the row itself, every dead base row, and one more: the kept last place
            # is then compared with a score the library really ranked below it.
            top_n = min(width + 2 + self._dead_in_base, self._base_rows)
            block = sp.csr_matrix(
                sp_matmul_topn(
                    query,
                    self._base_t,
                    top_n=top_n,
                    n_threads=self._threads if self._threads > 1 else None,
                )
            )
            counts = np.diff(block.indptr)
            local = np.repeat(np.arange(b), counts)
            full = counts == top_n
            np.minimum.at(row_min, local, block.data)
            parts_rows.append(local)
            parts_cols.append(block.indices.astype(np.int64))
            parts_data.append(block.data)
        if self._delta_rows:
            product = sp.csr_matrix(query @ self._delta_matrix().T)
            parts_rows.append(np.repeat(np.arange(b), np.diff(product.indptr)))
            parts_cols.append(product.indices.astype(np.int64) + self._base_rows)
            parts_data.append(product.data)
        local = np.concatenate(parts_rows) if parts_rows else np.zeros(0, np.int64)
        cols = np.concatenate(parts_cols) if parts_cols else np.zeros(0, np.int64)
        data = np.concatenate(parts_data) if parts_data else np.zeros(0)
        keep = self._alive[cols] & (cols != rows[local]) & (data > 0) & (data >= self._min_pool)
        local, cols, data = local[keep], cols[keep], data[keep]
        order = np.lexsort((cols, -data, local))
        local, cols, data = local[order], cols[order], data[order]
        starts = np.searchsorted(local, np.arange(b))
        rank = np.arange(local.size) - starts[local]
        kept = rank < width
        ids = np.full((b, width), -1, dtype=np.int32)
        scores = np.full((b, width), np.nan, dtype=np.float64)
        ids[local[kept], rank[kept]] = cols[kept]
        scores[local[kept], rank[kept]] = data[kept]
        # The library cut a full row at its smallest score; unseen base rows score at most
        # that. Safe only if the kept last place beats it (NaN: not full, so not safe).
        last = scores[:, -1]
        suspicious = full & (row_min >= self._min_pool) & ~(last > row_min)
        for i in np.flatnonzero(suspicious):
            vector = query[int(i)]
            ids[i], scores[i] = self._select(self._scores_against_all(vector), int(rows[i]))
        return ids, scores

    def _rows_matrix(self, rows: np.ndarray) -> sp.csr_matrix:
        """Blended rows of sorted ``rows`` (base rows first, then delta rows)."""
        in_base = rows[rows < self._base_rows]
        in_delta = rows[rows >= self._base_rows] - self._base_rows
        parts = []
        if in_base.size:
            parts.append(self._base[in_base])
        if in_delta.size:
            parts.append(self._delta_matrix()[in_delta])
        return sp.csr_matrix(sp.vstack(parts, format="csr"))

    def _delta_matrix(self) -> sp.csr_matrix:
        """The appended rows as a CSR view (no copy)."""
        return sp.csr_matrix(
            (
                self._delta_data[: self._delta_nnz],
                self._delta_indices[: self._delta_nnz],
                self._delta_indptr[: self._delta_rows + 1],
            ),
            shape=(self._delta_rows, self._features),
            copy=False,
        )

    def _set_base(self, base: sp.csr_matrix) -> None:
        """Freeze ``base`` (all rows so far) and start an empty delta."""
        self._base = base
        self._base_t = sp.csr_matrix(base.T)
        self._base_rows = base.shape[0]
        self._dead_in_base = 0
        self._delta_data = np.zeros(1024, dtype=np.float64)
        self._delta_indices = np.zeros(1024, dtype=base.indices.dtype)
        self._delta_indptr = np.zeros(1024, dtype=base.indices.dtype)
        self._delta_rows = 0
        self._delta_nnz = 0

    def _maybe_merge(self) -> None:
        """Fold the delta into the base, emptying dead rows, when either has grown too big."""
        if (
            self._delta_rows <= max(MERGE_MIN_ROWS, MERGE_FRACTION * self._base_rows)
            and self._dead_in_base <= MAX_DEAD_IN_BASE
        ):
            return
        merged = sp.csr_matrix(sp.vstack([self._base, self._delta_matrix()], format="csr"))
        counts = np.diff(merged.indptr)
        alive = self._alive[: self._n]
        mask = np.repeat(alive, counts)
        indptr = np.zeros(self._n + 1, dtype=merged.indptr.dtype)
        np.cumsum(counts * alive, out=indptr[1:])
        base = sp.csr_matrix((merged.data[mask], merged.indices[mask], indptr), shape=merged.shape)
        self._set_base(base)

    def _grow(self, capacity: int) -> None:
        """Enlarge every per-row array to ``capacity`` rows."""
        self._alive = _grown(self._alive, capacity, False)
        self._key = _grown(self._key, capacity, -1)
        self._pool_ids = _grown(self._pool_ids, capacity, -1)
        self._pool_scores = _grown(self._pool_scores, capacity, np.nan)
        self._pool_len = _grown(self._pool_len, capacity, 0)
        self._complete = _grown(self._complete, capacity, True)
        self._neighbours = _grown(self._neighbours, capacity, -1)
        self._scores = _grown(self._scores, capacity, np.nan)
        if self._latent is not None:
            self._latent = _grown(self._latent, capacity, 0.0)


def _grown(array: np.ndarray, capacity: int, fill: object) -> np.ndarray:
    """``array`` padded with ``fill`` to ``capacity`` rows."""
    out = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


def _resized(array: np.ndarray, size: int) -> np.ndarray:
    """A 1-d array grown to ``size`` entries (zeros after the old ones)."""
    out = np.zeros(size, dtype=array.dtype)
    out[: array.size] = array
    return out


def _reverse_index(pool_ids: np.ndarray, n: int) -> list[np.ndarray]:
    """For each row, the rows whose pool holds it (int32 arrays)."""
    holders = np.repeat(np.arange(pool_ids.shape[0], dtype=np.int32), pool_ids.shape[1])
    members = pool_ids.ravel()
    valid = members >= 0
    holders, members = holders[valid], members[valid]
    order = np.argsort(members, kind="stable")
    counts = np.bincount(members, minlength=n)
    return list(np.split(holders[order], np.cumsum(counts)[:-1])) if n else []
