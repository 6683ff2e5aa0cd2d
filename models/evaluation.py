"""Offline quality metrics of a fitted model against two real ground truths.

*Topical precision* (Reuters-21578): a neighbour is relevant when it shares at least one TOPICS
category with the query article. TOPICS live in ``article.extra["topics"]`` and never reach the
model, so they are an independent judgement of relatedness.

*Reader relatedness* (MIND): a neighbour is relevant when at least two distinct readers have both
articles in their reading history ("readers also read"). A most-popular baseline is scored on
the same queries in the same call.

Gains are binary. ``nDCG@k`` divides by the ideal DCG of ``min(k, R)`` relevant articles, where
``R`` is how many relevant partners the query has in the whole corpus. Missing neighbours (a
shorter list than ``k``) count as not relevant: an empty slot is a slot the widget cannot fill.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from models.config import ModelConfig
from models.importers.mind import Impression
from models.model import RelatedModel
from models.records import Article

Protocol = Literal["reuters", "mind"]
PROTOCOLS: tuple[Protocol, ...] = ("reuters", "mind")
# A pair is "co-read" when at least this many distinct readers have both in their history: one
# reader alone is too often noise (a single user clicking through a homepage).
MIN_CO_READERS = 2


def alpha_label(alpha: float) -> str:
    """Human name of a blend weight: text-only, tags-only or blend."""
    if alpha == 1.0:
        return "text-only"
    if alpha == 0.0:
        return "tags-only"
    return "blend"


# --------------------------------------------------------------------------------- helpers
def _check_k(model: RelatedModel, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    stored = int(model.neighbours_.shape[1])
    if k > stored:
        raise ValueError(
            f"the model stores {stored} neighbours per article, fewer than k={k};"
            f" retrain with k >= {k}"
        )


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _ranking_metrics(relevant: np.ndarray, ideal_counts: np.ndarray, k: int) -> dict[str, float]:
    """Mean P@k, hit rate and nDCG@k of a boolean (queries, k) relevance matrix."""
    if relevant.shape[0] == 0:
        return {"precision": 0.0, "hit_rate": 0.0, "ndcg": 0.0}
    discounts = _discounts(k)
    dcg = relevant.astype(np.float64) @ discounts
    cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
    ideal = cumulative[np.minimum(ideal_counts, k)]
    # A query with no relevant partner has an undefined nDCG; callers only pass queries with one.
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    return {
        "precision": float(relevant.sum(axis=1).mean() / k),
        "hit_rate": float(relevant.any(axis=1).mean()),
        "ndcg": float(ndcg.mean()),
    }


def _topics(article: Article) -> frozenset[str]:
    raw = article.extra.get("topics")
    if raw is None:
        return frozenset()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ValueError(f"article {article.id!r}: extra 'topics' must be a list of strings")
    if not all(isinstance(topic, str) for topic in raw):
        raise ValueError(f"article {article.id!r}: extra 'topics' must be a list of strings")
    return frozenset(topic for topic in raw if topic)


def has_topics(articles: Iterable[Article]) -> bool:
    """Whether any article carries a non-empty ``extra["topics"]`` list."""
    return any(article.extra.get("topics") for article in articles)


def _relevant_counts(topic_sets: list[frozenset[str]]) -> np.ndarray:
    """Per row, how many other rows share at least one topic (0 for a row without topics)."""
    distinct = sorted({s for s in topic_sets if s}, key=sorted)
    if not distinct:
        return np.zeros(len(topic_sets), dtype=np.int64)
    position = {s: i for i, s in enumerate(distinct)}
    vocabulary = {t: i for i, t in enumerate(sorted({t for s in distinct for t in s}))}
    rows = [i for i, s in enumerate(distinct) for _ in s]
    cols = [vocabulary[t] for s in distinct for t in s]
    incidence = sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(distinct), len(vocabulary))
    )
    # Grouping identical topic sets keeps this (sets x sets) rather than (articles x articles).
    overlaps = (incidence @ incidence.T).toarray() > 0
    sizes = Counter(position[s] for s in topic_sets if s)
    weights = np.array([sizes[i] for i in range(len(distinct))], dtype=np.int64)
    per_set = overlaps.astype(np.int64) @ weights - 1  # minus the query itself
    return np.array([per_set[position[s]] if s else 0 for s in topic_sets], dtype=np.int64)


# --------------------------------------------------------------------------------- Reuters
def topical_precision(
    model: RelatedModel, articles: Iterable[Article], k: int = 10
) -> dict[str, Any]:
    """P@5, P@k, nDCG@k and coverage@k over model articles that have TOPICS."""
    _check_k(model, k)
    topics_by_id = {article.id: _topics(article) for article in articles}
    if not any(topics_by_id.values()):
        raise ValueError("no article carries TOPICS (extra 'topics'); nothing to evaluate")
    matched = sum(1 for article_id in model.ids_ if article_id in topics_by_id)
    if matched == 0:
        raise ValueError("none of the given articles is in the model")
    # Model rows missing from the ground truth have no topics, so they are never relevant.
    topic_sets = [topics_by_id.get(article_id, frozenset()) for article_id in model.ids_]
    queries = np.array([row for row, topics in enumerate(topic_sets) if topics], dtype=np.int64)
    neighbours = np.asarray(model.neighbours_[queries, :k])
    relevant = np.zeros(neighbours.shape, dtype=bool)
    for i, row in enumerate(queries):
        mine = topic_sets[row]
        for j, col in enumerate(neighbours[i]):
            if col < 0:
                break
            relevant[i, j] = not mine.isdisjoint(topic_sets[col])
    ideal = _relevant_counts(topic_sets)[queries]
    at_k = _ranking_metrics(relevant, ideal, k)
    result: dict[str, Any] = {
        "protocol": "reuters",
        "k": k,
        "articles": len(model.ids_),
        "articles_in_truth": matched,
        "queries": int(queries.size),
        "queries_without_relevant": int((ideal == 0).sum()),
        "precision_at_5": (
            _ranking_metrics(relevant[:, :5], ideal, 5)["precision"] if k >= 5 else None
        ),
        "precision_at_k": at_k["precision"],
        "ndcg_at_k": at_k["ndcg"],
        "coverage": float((neighbours[:, k - 1] >= 0).mean()) if queries.size else 0.0,
    }
    return result


# --------------------------------------------------------------------------------- MIND
def reader_histories(impressions: Iterable[Impression], index: Mapping[str, int]) -> list[set[int]]:
    """Per distinct reader, the rows of the corpus articles in their history(ies)."""
    by_user: dict[str, set[int]] = {}
    for impression in impressions:
        rows = by_user.setdefault(impression.user_id, set())
        rows.update(index[news_id] for news_id in impression.history if news_id in index)
    return list(by_user.values())


def co_read_pairs(histories: Iterable[set[int]]) -> Counter[tuple[int, int]]:
    """For every pair of rows (low, high), how many distinct readers read both."""
    pairs: Counter[tuple[int, int]] = Counter()
    for rows in histories:
        pairs.update(combinations(sorted(rows), 2))
    return pairs


def reader_relatedness(
    model: RelatedModel, impressions: Sequence[Impression], k: int = 10
) -> dict[str, Any]:
    """Hit rate@k and nDCG@k of co-read neighbours, with a most-popular baseline."""
    _check_k(model, k)
    truth = _co_read_truth(model.index_, impressions)
    return _reader_scores(model, truth, k)


def _co_read_truth(index: Mapping[str, int], impressions: Sequence[Impression]) -> dict[str, Any]:
    if not impressions:
        raise ValueError("no impressions: the behaviors file is empty")
    histories = reader_histories(impressions, index)
    pairs = co_read_pairs(histories)
    partners: dict[int, set[int]] = {}
    for (a, b), readers in pairs.items():
        if readers >= MIN_CO_READERS:
            partners.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
    if not partners:
        raise ValueError(
            f"no article pair is read by >= {MIN_CO_READERS} readers within the corpus;"
            " do the behaviors belong to these articles?"
        )
    popularity = Counter(row for rows in histories for row in rows)
    # Most-read first; ties by the lower row so the baseline is deterministic.
    popular = sorted(popularity, key=lambda row: (-popularity[row], row))
    return {
        "partners": partners,
        "popular": popular,
        "impressions": len(impressions),
        "readers": len(histories),
        "readers_with_pairs": sum(1 for rows in histories if len(rows) >= 2),
        "history_refs": sum(len(i.history) for i in impressions),
        "history_refs_resolved": sum(
            1 for i in impressions for news_id in i.history if news_id in index
        ),
        "co_read_pairs": len(pairs),
        "relevant_pairs": sum(1 for readers in pairs.values() if readers >= MIN_CO_READERS),
    }


def _reader_scores(model: RelatedModel, truth: dict[str, Any], k: int) -> dict[str, Any]:
    partners: dict[int, set[int]] = truth["partners"]
    queries = np.array(sorted(partners), dtype=np.int64)
    neighbours = np.asarray(model.neighbours_[queries, :k])
    relevant = np.zeros(neighbours.shape, dtype=bool)
    baseline = np.zeros(neighbours.shape, dtype=bool)
    head = truth["popular"][: k + 1]
    for i, row in enumerate(queries):
        mine = partners[int(row)]
        for j, col in enumerate(neighbours[i]):
            if col < 0:
                break
            relevant[i, j] = int(col) in mine
        picks = [p for p in head if p != row][:k]
        for j, col in enumerate(picks):
            baseline[i, j] = col in mine
    ideal = np.array([len(partners[int(row)]) for row in queries], dtype=np.int64)
    model_scores = _ranking_metrics(relevant, ideal, k)
    base_scores = _ranking_metrics(baseline, ideal, k)
    counts = {key: value for key, value in truth.items() if key not in ("partners", "popular")}
    return {
        "protocol": "mind",
        "k": k,
        "articles": len(model.ids_),
        **counts,
        "queries": int(queries.size),
        "hit_rate": model_scores["hit_rate"],
        "ndcg_at_k": model_scores["ndcg"],
        "precision_at_k": model_scores["precision"],
        "coverage": float((neighbours[:, k - 1] >= 0).mean()),
        "baseline": {
            "name": "most-popular",
            "hit_rate": base_scores["hit_rate"],
            "ndcg_at_k": base_scores["ndcg"],
            "precision_at_k": base_scores["precision"],
        },
    }


# --------------------------------------------------------------------------------- sweeps
def evaluate_model(
    model: RelatedModel,
    articles: Sequence[Article],
    protocol: Protocol,
    *,
    impressions: Sequence[Impression] | None = None,
    k: int = 10,
) -> dict[str, Any]:
    """Run one protocol on a fitted model."""
    if protocol == "reuters":
        return topical_precision(model, articles, k)
    if protocol == "mind":
        if impressions is None:
            raise ValueError("the mind protocol needs impressions (a behaviors.tsv file)")
        return reader_relatedness(model, impressions, k)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def compare_alphas(
    articles: Sequence[Article],
    config: ModelConfig,
    alphas: Iterable[float],
    protocol: Protocol,
    *,
    impressions: Sequence[Impression] | None = None,
    k: int = 10,
    truth: Sequence[Article] | None = None,
    on_row: Callable[[dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Refit ``config`` at each alpha on ``articles``; score against ``truth`` (default: same)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if protocol == "mind" and impressions is None:
        raise ValueError("the mind protocol needs impressions (a behaviors.tsv file)")
    base = config.replace(k=max(config.k, k))
    rows = []
    for alpha in alphas:
        started = time.perf_counter()
        model = RelatedModel(config=base.replace(alpha=float(alpha))).fit(articles)
        metrics = evaluate_model(
            model, truth if truth is not None else articles, protocol, impressions=impressions, k=k
        )
        row = {
            "label": alpha_label(float(alpha)),
            "alpha": float(alpha),
            "tag_smoothing": base.tag_smoothing,
            **metrics,
            "seconds": round(time.perf_counter() - started, 2),
        }
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
