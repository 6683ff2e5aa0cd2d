"""Benchmark incremental updates: upsert and delete latency on a ~100,000-article corpus.

Usage: ``python benchmarks/bench_incremental.py [ARTICLES.jsonl] [--articles N] [--upserts U] ...``

The corpus is built from real articles (default: ``data/sample/reuters-sample.jsonl``): article
``i`` takes a random ~70% of the sentences of source article ``i mod S``, one or two sentences of
another source article, a few pseudo-words from a Zipf-distributed 50,000-word list (so that the
vocabulary grows with the corpus, as a real one does) and the source's tags, sometimes with one
borrowed tag. The model is fitted on the first N, then U held-out articles are upserted one at a
time, and articles listed in many final lists are deleted. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import resource
import string
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from models import incremental
from models.config import ModelConfig
from models.incremental import IncrementalIndex
from models.model import RelatedModel
from models.records import Article, read_articles

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO / "data" / "sample" / "reuters-sample.jsonl"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def pseudo_words(count: int, rng: np.random.Generator) -> list[str]:
    """Distinct letter-only pseudo-words (the tokenizer drops digits)."""
    letters = np.array(list(string.ascii_lowercase))
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(letters, size=int(rng.integers(6, 11)))))
    return sorted(words)


def synthetic_corpus(sources: list[Article], n: int, seed: int = 0) -> list[Article]:
    """``n`` perturbed copies of the source articles (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sentences = [[s for s in _SENTENCE.split(a.body) if s.strip()] or [a.body] for a in sources]
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


def _empty_top_k(matrix: Any, k: int, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in for the model's top-k pass: no candidates (see ``--skip-model-topk``)."""
    n = matrix.shape[0]
    return np.full((n, k), -1, dtype=np.int32), np.full((n, k), np.nan)


def percentile_ms(values: list[float], q: float) -> float:
    """A percentile of durations in seconds, as milliseconds."""
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--articles", type=int, default=100_000, help="Corpus size to fit on.")
    parser.add_argument("--upserts", type=int, default=1000, help="New articles to upsert.")
    parser.add_argument("--deletes", type=int, default=5, help="Most-listed articles to delete.")
    parser.add_argument("--k", type=int, default=ModelConfig.k)
    parser.add_argument("--pool", type=int, default=ModelConfig.rerank_pool)
    parser.add_argument("--components", type=int, default=ModelConfig.rerank_components)
    parser.add_argument("--no-rerank", action="store_true")
    parser.add_argument(
        "--skip-model-topk",
        action="store_true",
        help="Fit vectorisers and SVD only; the index computes the exact pools itself.",
    )
    args = parser.parse_args(argv)

    sources = read_articles([args.source]).articles
    corpus = synthetic_corpus(sources, args.articles + args.upserts)
    base, new = corpus[: args.articles], corpus[args.articles :]
    config = ModelConfig(
        k=args.k,
        rerank=not args.no_rerank,
        rerank_pool=args.pool,
        rerank_components=args.components,
    )
    print(f"corpus: {len(base):,} articles from {len(sources):,} in {args.source}", flush=True)

    started = time.perf_counter()
    if args.skip_model_topk:
        # The index computes every pool itself; the model's own top-k pass is only needed for
        # its neighbours_, which the index does not read.
        with mock.patch("models.model.top_k", _empty_top_k):
            model = RelatedModel(config=config).fit(base)
    else:
        model = RelatedModel(config=config).fit(base)
    fit_seconds = time.perf_counter() - started
    print(f"fit: {fit_seconds:.1f} s", flush=True)
    started = time.perf_counter()
    index = IncrementalIndex.from_model(model)
    index_seconds = time.perf_counter() - started
    print(f"index: {index_seconds:.1f} s (pool {index.pool})", flush=True)

    upserts, changed = [], []
    for article in new:
        started = time.perf_counter()
        result = index.upsert(article)
        upserts.append(time.perf_counter() - started)
        changed.append(len(result))
    edits, edit_changed = [], []
    rng = np.random.default_rng(1)
    for row in rng.choice(len(base), size=min(100, len(base)), replace=False).tolist():
        edited = Article(
            id=base[row].id, title=base[row].title, body=new[row % len(new)].body, tags=()
        )
        started = time.perf_counter()
        edit_changed.append(len(index.upsert(edited)))
        edits.append(time.perf_counter() - started)

    _, neighbours, _ = index.snapshot()
    live = index.ids
    listed = np.bincount(neighbours[neighbours >= 0], minlength=len(live))
    deletes, delete_lists = [], []
    for position in np.argsort(-listed, kind="stable")[: args.deletes].tolist():
        started = time.perf_counter()
        index.delete(live[position])
        deletes.append(time.perf_counter() - started)
        delete_lists.append(int(listed[position]))

    # The amortised cost: folding the delta into the base, forced once here.
    incremental.MERGE_MIN_ROWS, incremental.MERGE_FRACTION = 0, 0.0
    started = time.perf_counter()
    index._maybe_merge()
    merge_seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    k, pool = config.k, index.pool
    print()
    print("| corpus | k / pool | operation | n | p50 ms | p99 ms | max ms | lists changed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, times, counts in (
        ("upsert (new)", upserts, changed),
        ("upsert (edit)", edits, edit_changed),
    ):
        print(
            f"| {len(base):,} | {k} / {pool} | {name} | {len(times)} | "
            f"{percentile_ms(times, 50):.1f} | {percentile_ms(times, 99):.1f} | "
            f"{max(times) * 1000:.1f} | mean {np.mean(counts):.0f}, max {max(counts)} |"
        )
    for seconds, lists in zip(deletes, delete_lists, strict=True):
        print(
            f"| {len(base):,} | {k} / {pool} | delete (in {lists} lists) | 1 | "
            f"{seconds * 1000:.1f} | | | {lists} |"
        )
    print()
    print(
        f"fit {fit_seconds:.1f} s; index build {index_seconds:.1f} s; delta merge "
        f"{merge_seconds * 1000:.0f} ms; peak RSS {rss_mb:,.0f} MB; {sys.version.split()[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
