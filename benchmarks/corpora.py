"""Corpora generated from real articles, for benchmarks at sizes the bundled sample lacks, and
a model fit that skips the work an incremental index redoes anyway."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.harness import REPO
from models.blocks import BlendedRows, NeighbourPlan, empty_result
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import Article

# The bundled sample (1,483 Reuters stories): the default source of generated corpora.
SAMPLE_ARTICLES = REPO / "data" / "sample" / "reuters-sample.jsonl"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def synthesise(articles: Sequence[Article], size: int, seed: int = 0) -> list[Article]:
    """``size`` articles derived from ``articles`` with a seeded RNG (same input, same output).

    Article ``i`` copies a uniformly drawn source's title, tags and date; its body keeps each
    source sentence with probability ``p ~ U(0.7, 0.9)`` (each word instead, when the body has
    fewer than 3 sentences; at least one unit is kept), then appends 1-3 consecutive sentences
    of another article sharing a random tag of the source (any other article when untagged).
    So the vocabulary stays Reuters' and each story has ~``size / len(articles)`` near-variants,
    which is what a multi-year archive of wire copy looks like to TF-IDF.
    """
    rng = np.random.default_rng(seed)
    sentences = [SENTENCE_END.split(a.body.strip()) if a.body.strip() else [] for a in articles]
    by_tag: dict[str, list[int]] = {}
    for row, article in enumerate(articles):
        for tag in article.tags:
            by_tag.setdefault(tag, []).append(row)
    n = len(articles)
    out: list[Article] = []
    for i in range(size):
        src = int(rng.integers(n))
        source = articles[src]
        keep_p = float(rng.uniform(0.7, 0.9))
        units = sentences[src]
        if len(units) < 3:
            units = source.body.split()
        kept = [u for u in units if rng.random() < keep_p]
        if units and not kept:
            kept = [units[int(rng.integers(len(units)))]]
        pool = by_tag.get(source.tags[int(rng.integers(len(source.tags)))]) if source.tags else None
        other = (
            pool[int(rng.integers(len(pool)))] if pool and len(pool) > 1 else int(rng.integers(n))
        )
        extra = sentences[other]
        if extra:
            start = int(rng.integers(len(extra)))
            kept.extend(extra[start : start + int(rng.integers(1, 4))])
        out.append(
            Article(
                id=f"syn-{i:07d}",
                title=source.title,
                body=" ".join(kept),
                tags=source.tags,
                published_at=source.published_at,
            )
        )
    return out


def pseudo_words(count: int, rng: np.random.Generator) -> list[str]:
    """Distinct letter-only pseudo-words (the tokenizer drops digits)."""
    letters = np.array(list(string.ascii_lowercase))
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(letters, size=int(rng.integers(6, 11)))))
    return sorted(words)


def synthetic_corpus(sources: list[Article], n: int, seed: int = 0) -> list[Article]:
    """``n`` perturbed copies of the source articles (benchmarks/bench_incremental.py).

    Article ``i`` takes a random ~70% of the sentences of source article ``i mod S``, one or two
    sentences of another source article, a few pseudo-words from a Zipf-distributed 50,000-word
    list (so that the vocabulary grows with the corpus, as a real one does) and the source's
    tags, sometimes with one borrowed tag.
    """
    rng = np.random.default_rng(seed)
    sentences = [[s for s in SENTENCE_END.split(a.body) if s.strip()] or [a.body] for a in sources]
    vocabulary = np.array(pseudo_words(50_000, rng))
    zipf = 1.0 / np.arange(1, len(vocabulary) + 1)
    zipf /= zipf.sum()
    draws = rng.choice(len(vocabulary), size=(n, 3), p=zipf)
    out = []
    for i in range(n):
        base = i % len(sources)
        source = sources[base]
        own = [s for s in sentences[base] if rng.random() < 0.7] or sentences[base][:1]
        other = sentences[int(rng.integers(len(sources)))]
        borrowed = [other[int(rng.integers(len(other)))] for _ in range(int(rng.integers(1, 3)))]
        extra = " ".join(vocabulary[draws[i]])
        tags = list(source.tags)
        if rng.random() < 0.3:
            donor = sources[int(rng.integers(len(sources)))].tags
            if donor:
                tags.append(donor[int(rng.integers(len(donor)))])
        title_words = [w for w in source.title.split() if rng.random() < 0.85] or [source.title]
        out.append(
            Article(
                id=f"syn-{i}",
                title=" ".join(title_words),
                body=" ".join([*own, *borrowed, extra]),
                tags=tuple(dict.fromkeys(tags)),
            )
        )
    return out


def _no_neighbours(
    rows: BlendedRows, latent: np.ndarray | None, plan: NeighbourPlan, progress: Any
) -> tuple[np.ndarray, ...]:
    """A neighbour runner that computes nothing: every list empty."""
    return empty_result(rows.matrix.shape[0], plan)


def fit_without_top_k(config: ModelConfig, articles: Sequence[Article]) -> RelatedModel:
    """Fit vectorisers and SVD only: an incremental index computes every pool itself, so the
    model's own top-k pass (its ``neighbours_``, which the index does not read) is skipped."""
    return RelatedModel(config=config).fit(articles, runner=_no_neighbours)
