"""What an incremental index reuses of a fitted model: its vectorisers, pool and reference build.

The vocabulary, IDF, tag weights and SVD components are the model's, never refitted; the
reference for every incremental update is :func:`build_with_fitted`, a full build over the live
articles with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from models.model import RelatedModel, pool_min_score, pool_size
from models.records import Article
from models.rerank import rerank
from models.topk import top_k


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
