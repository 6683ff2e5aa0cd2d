"""The related-articles model: blended text + tag similarity and exact top-k neighbours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from models.blocks import (
    BlendedRows,
    InProcess,
    NeighbourPlan,
    NeighbourRunner,
    ProgressFactory,
)
from models.config import ModelConfig
from models.latent import fit_latent_components, latent_component_count
from models.records import Article
from models.tags import TagVectorizer
from models.text import TextVectorizer


def text_vectorizer(cfg: ModelConfig) -> TextVectorizer:
    """An unfitted text vectoriser with the config's settings."""
    return TextVectorizer(
        title_weight=cfg.title_weight,
        sublinear_tf=cfg.sublinear_tf,
        stop_words=cfg.stop_words,
        strip_accents=cfg.strip_accents,
        min_df=cfg.text_min_df,
        max_df=cfg.text_max_df,
        ngram_max=cfg.ngram_max,
        max_features=cfg.max_features,
    )


def tag_vectorizer(cfg: ModelConfig) -> TagVectorizer:
    """An unfitted tag vectoriser with the config's settings."""
    return TagVectorizer(
        aliases=cfg.tag_aliases,
        min_df=cfg.tag_min_df,
        max_df=cfg.tag_max_df,
        split_glued=cfg.split_glued_tags,
        smoothing=cfg.tag_smoothing,
    )


@dataclass(frozen=True)
class PairScore:
    """Similarity of two articles: the blend and its two parts."""

    blended: float
    text: float
    tags: float


@dataclass(frozen=True)
class Explanation:
    """Why two articles are similar: shared tags and the terms that contribute most."""

    score: PairScore
    shared_tags: list[tuple[str, float]]
    top_terms: list[tuple[str, float]]


class RelatedModel:
    """Exact top-k related articles under ``alpha * cos(text) + (1 - alpha) * cos(tags)``.

    Parameters
    ----------
    config : ModelConfig
        Every hyper-parameter; stored verbatim with the artifact.

    Attributes
    ----------
    ids_ : list of str, article ids in row order.
    text_matrix_, tag_matrix_ : CSR matrices of L2-normalised rows (a row is all zero when the
        article has no known word or tag).
    neighbours_ : int32 array (n, k) of row indices, -1 padded.
    scores_ : float32 array (n, k), NaN padded.
    latent_ : float32 array (n, c) of unit latent vectors (re-ranking), or ``None``.
    pools_ : (int32 ids, float64 scores), each (n, pool + spare): every article's exact
        candidates (``fit(keep_pools=True)``), or ``None``.
    """

    def __init__(self, *, config: ModelConfig | None = None) -> None:
        self.config = config
        self.pools_: tuple[np.ndarray, np.ndarray] | None = None
        # A loaded model's pools.npz, read only by the incremental index (models/artifact.py).
        self.pools_file_: Path | None = None

    @property
    def cfg(self) -> ModelConfig:
        return self.config or ModelConfig()

    # ----------------------------------------------------------------------------- fitting
    def fit(
        self,
        articles: Sequence[Article],
        *,
        progress: ProgressFactory | None = None,
        runner: NeighbourRunner | None = None,
        keep_pools: bool = False,
    ) -> RelatedModel:
        """Vectorise the articles and compute every article's top-k neighbours.

        ``runner`` computes the blocks of rows (default: in this process; ``models.cluster``
        runs them on a Dask cluster with the same result, bit for bit). ``keep_pools`` also
        keeps each article's exact candidates (``pools_``, the incremental index's pools), at
        no change to the lists.
        """
        cfg = self.cfg
        if len(articles) < 2:
            raise ValueError(f"need at least 2 articles to find neighbours, got {len(articles)}")
        self.ids_ = [a.id for a in articles]
        if len(set(self.ids_)) != len(self.ids_):
            raise ValueError("article ids must be unique")
        self.index_ = {article_id: row for row, article_id in enumerate(self.ids_)}
        self.text_ = text_vectorizer(cfg)
        self.text_matrix_ = self.text_.fit_transform(
            [a.title for a in articles], [a.body for a in articles]
        )
        self.tags_ = tag_vectorizer(cfg)
        tag_lists = [a.tags for a in articles]
        self.tags_.fit(tag_lists)
        self.tag_matrix_ = self.tags_.transform(tag_lists)
        self._compute_neighbours(progress, runner, keep_pools)
        return self

    def blended_matrix(self) -> sp.csr_matrix:
        """Rows whose dot product is the blended score: [sqrt(a) * text, sqrt(1 - a) * tags]."""
        alpha = self.cfg.alpha
        return sp.csr_matrix(
            sp.hstack(
                [math.sqrt(alpha) * self.text_matrix_, math.sqrt(1.0 - alpha) * self.tag_matrix_],
                format="csr",
            )
        )

    def _compute_neighbours(
        self, progress: ProgressFactory | None, runner: NeighbourRunner | None, keep_pools: bool
    ) -> None:
        cfg = self.cfg
        blended = self.blended_matrix()
        n = blended.shape[0]
        components = latent_component_count(n, blended.shape[1], cfg)
        self.rerank_active_ = cfg.rerank and cfg.rerank_weight > 0 and components >= 2
        self.latent_: np.ndarray | None = None
        self.svd_components_: np.ndarray | None = None
        if self.rerank_active_:
            # Fitted (on a seeded row sample, models/latent.py) before any block runs: every
            # block re-ranks against the same latent vectors, wherever it runs.
            self.svd_components_ = fit_latent_components(blended, cfg)
            self.latent_ = self.latent_vectors(blended)
        plan = NeighbourPlan(
            k=cfg.k,
            pool=pool_size(self),
            pool_min_score=pool_min_score(self),
            rerank=self.rerank_active_,
            weight=cfg.rerank_weight,
            feedback=cfg.rerank_feedback,
            feedback_weight=cfg.rerank_feedback_weight,
            min_score=cfg.min_score,
            spare=pool_spare(pool_size(self)),
            keep_pools=keep_pools,
        )
        run = runner or InProcess()
        self.neighbours_, self.scores_, *pools = run(
            BlendedRows(blended), self.latent_, plan, progress
        )
        self.pools_ = (pools[0], pools[1]) if pools else None

    def latent_vectors(self, blended_rows: sp.csr_matrix) -> np.ndarray:
        """Unit latent (SVD) vectors of blended rows, float32."""
        if self.svd_components_ is None:
            raise ValueError("this model has no latent component (re-ranking is off)")
        projected = np.asarray(blended_rows @ self.svd_components_.T.astype(np.float64))
        return normalize(projected).astype(np.float32)

    # ----------------------------------------------------------------------------- queries
    def row(self, article_id: str) -> int:
        """Row of an article id; ``KeyError`` naming it when unknown."""
        try:
            return self.index_[article_id]
        except KeyError:
            raise KeyError(f"unknown article id {article_id!r}") from None

    def neighbours(self, article_id: str, k: int | None = None) -> list[tuple[str, float]]:
        """The stored neighbours of one article, best first."""
        row = self.row(article_id)
        limit = self.neighbours_.shape[1] if k is None else k
        out = []
        for col, score in zip(
            self.neighbours_[row, :limit], self.scores_[row, :limit], strict=True
        ):
            if col < 0:
                break
            out.append((self.ids_[col], float(score)))
        return out

    def similarity(self, id_a: str, id_b: str) -> PairScore:
        """Blended, text and tag cosine of any two articles (not only top-k pairs)."""
        a, b = self.row(id_a), self.row(id_b)
        text = float(self.text_matrix_[a].multiply(self.text_matrix_[b]).sum())
        tags = float(self.tag_matrix_[a].multiply(self.tag_matrix_[b]).sum())
        alpha = self.cfg.alpha
        return PairScore(blended=alpha * text + (1.0 - alpha) * tags, text=text, tags=tags)

    def explain(self, id_a: str, id_b: str, n_terms: int = 10) -> Explanation:
        """Shared tags (with weights) and the terms that add most to the text cosine."""
        a, b = self.row(id_a), self.row(id_b)
        tag_names = self.tags_.terms_
        shared_tags = _shared(self.tag_matrix_[a], self.tag_matrix_[b], tag_names, None)
        terms = self.text_.terms_
        top_terms = _shared(self.text_matrix_[a], self.text_matrix_[b], terms, n_terms)
        return Explanation(self.similarity(id_a, id_b), shared_tags, top_terms)

    def shared_tags(self, id_a: str, id_b: str) -> list[str]:
        """Normalised tags the two articles share, most specific first."""
        return [tag for tag, _ in self.explain(id_a, id_b, n_terms=0).shared_tags]

    def coverage(self, k: int | None = None) -> float:
        """Share of articles with a full list of ``k`` neighbours."""
        k = self.neighbours_.shape[1] if k is None else k
        return float(np.mean(self.neighbours_[:, k - 1] >= 0)) if len(self.ids_) else 0.0


def pool_size(model: RelatedModel) -> int:
    """Candidates kept per article: the re-ranking pool when re-ranking is active, else ``k``."""
    cfg = model.cfg
    return max(cfg.k, cfg.rerank_pool) if model.rerank_active_ else cfg.k


def pool_spare(pool: int) -> int:
    """Candidates the incremental index keeps past each pool, so that a delete rarely needs a
    recomputation: a quarter of the pool, at least 8."""
    return max(8, pool // 4)


def pool_min_score(model: RelatedModel) -> float:
    """Score floor of the candidate pool: with re-ranking, ``min_score`` applies to the final
    score, so the pool is not cut by it."""
    return 0.0 if model.rerank_active_ else model.cfg.min_score


def _shared(
    row_a: sp.csr_matrix, row_b: sp.csr_matrix, names: list[str], limit: int | None
) -> list[tuple[str, float]]:
    product = sp.csr_matrix(row_a.multiply(row_b))
    order = np.lexsort((product.indices, -product.data))
    if limit is not None:
        order = order[:limit]
    return [
        (names[product.indices[i]], float(product.data[i])) for i in order if product.data[i] > 0
    ]
