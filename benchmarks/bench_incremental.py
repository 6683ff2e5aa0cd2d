"""Benchmark incremental updates: upsert and delete latency on a ~100,000-article corpus.

Usage: ``python -m benchmarks.bench_incremental [ARTICLES.jsonl] [--articles N] [--upserts U] ...``

The corpus is built from real articles (default: ``data/sample/reuters-sample.jsonl``) by
``benchmarks.corpora.synthetic_corpus``: article ``i`` takes a random ~70% of the sentences of
source article ``i mod S``, one or two sentences of another source article, a few pseudo-words
from a Zipf-distributed 50,000-word list (so that the vocabulary grows with the corpus, as a
real one does) and the source's tags, sometimes with one borrowed tag. The model is fitted on
the first N, then U held-out articles are upserted one at a time, and articles listed in many
final lists are deleted. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.corpora import SAMPLE_ARTICLES, fit_without_top_k, synthetic_corpus
from benchmarks.load import percentile
from models.config import ModelConfig
from models.incremental import IncrementalIndex
from models.incremental import matrix as incremental
from models.model import RelatedModel
from models.records import Article, read_articles


def percentile_ms(values: list[float], q: float) -> float:
    """A percentile of durations in seconds, as milliseconds."""
    return percentile(values, q) * 1000.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=SAMPLE_ARTICLES)
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
        model = fit_without_top_k(config, base)
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
