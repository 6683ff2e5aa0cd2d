"""Benchmark incremental updates end to end through Redis: enqueue -> writer -> visible.

Usage::

    python -m benchmarks.bench_updates [SOURCE.jsonl] [--articles 100000] [--upserts 1000]
        [--delete-lists 200] [--deletes 3] [--model DIR] [--json OUT]

``--model DIR``: start from a trained model directory instead (e.g. the 1M build of
``benchmarks/bench_cluster.py``); the upserts are then new articles generated from SOURCE,
and the time and memory of loading the model and building the writer's index are reported.

One run: a private redis-server (no persistence); a ~100,000-article corpus generated from real
articles exactly as ``benchmarks/bench_incremental.py`` does (``benchmarks.corpora``); the model
fitted, its incremental index built and its lists published; then the real update writer
(:class:`service.redis.writer.Writer`, what ``recs worker`` runs) applies the queue in a thread, and
this script acts as the API does for ``PUT``/``DELETE /v1/articles/<id>``:

- **upsert**: ``enqueue_upsert`` then ``wait_applied`` (the writer pushes its ack inside the
  same MULTI/EXEC as every list it writes, so once the ack is there every affected list is
  visible); then the article's own list is read through the API's store (``RedisStore``) and
  each of its neighbours' lists is read to count how many now hold it. The latency is from the
  enqueue to the own list being readable (ack included), per upsert.
- **delete**: articles that appear in about ``--delete-lists`` lists (counted from the index);
  latency from the enqueue to the ack, then every list that held the article is read back from
  Redis: it must hold it no more and still have k items where the corpus allows.

The writer builds its index from the loaded model; to spend the ~100k exact pool pass once,
the index this script built (from the same model) is handed to it (``from_model`` is patched
for this process only): the writer's behaviour after start-up is unchanged. Target (issue #7):
visible within 1 s; delete from 200 lists within 1 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from benchmarks.corpora import SAMPLE_ARTICLES, fit_without_top_k, synthetic_corpus
from benchmarks.harness import RedisServer, verdict
from benchmarks.load import percentile
from models.artifact import load_model, save_model
from models.config import ModelConfig
from models.incremental import IncrementalIndex
from models.records import Article, read_articles
from service.redis import queue as updates
from service.redis.client import Client
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.redis.writer import Writer

WAIT_S = 30.0  # an ack later than this counts as a failure


def _lists_holding(index: IncrementalIndex, article_id: str) -> list[str]:
    """Ids whose current list holds ``article_id`` (read while the writer is idle)."""
    ids, neighbours, _ = index.snapshot()
    position = ids.index(article_id)
    holders = np.flatnonzero((neighbours == position).any(axis=1))
    return [ids[i] for i in holders.tolist()]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a markdown table; return 0 if both targets are met."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=SAMPLE_ARTICLES)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--upserts", type=int, default=1000)
    parser.add_argument("--deletes", type=int, default=3)
    parser.add_argument("--delete-lists", type=int, default=200)
    parser.add_argument("--model", type=Path, help="A trained model directory to start from.")
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as tmp:
        return _run(args, Path(tmp))


def _run(args: argparse.Namespace, work: Path) -> int:
    sources = read_articles([args.source]).articles
    started = time.perf_counter()
    if args.model is not None:
        loaded = load_model(args.model)
        base = loaded.articles
        generated = synthetic_corpus(sources, args.upserts, seed=1)
        new = [replace(a, id=f"bench-upsert-{i:06d}") for i, a in enumerate(generated)]
        print(f"model {args.model}: {len(base):,} articles, loaded in", end=" ")
    else:
        corpus = synthetic_corpus(sources, args.articles + args.upserts)
        base, new = corpus[: args.articles], corpus[args.articles :]
        print(f"corpus: {len(base):,} + {len(new):,} articles from {args.source}", flush=True)
        model = fit_without_top_k(ModelConfig(), base)
        save_model(model, base, work / "model")
        loaded = load_model(work / "model")
        print("fit + save:", end=" ")
    print(f"{time.perf_counter() - started:.1f} s; peak RSS {_rss_mb():,.0f} MB", flush=True)
    started = time.perf_counter()
    index = IncrementalIndex.from_model(loaded.model)
    print(f"index: {time.perf_counter() - started:.1f} s; peak RSS {_rss_mb():,.0f} MB", flush=True)
    live = index.to_loaded(loaded)
    with RedisServer(work) as redis_server:
        client = redis_server.client(timeout=60)
        started = time.perf_counter()
        publish(client, live)
        print(f"publish: {time.perf_counter() - started:.1f} s", flush=True)
        version, k = live.version, index.k
        store = RedisStore(redis_server.url)

        stop = threading.Event()
        with (
            mock.patch("service.redis.writer.IncrementalIndex.from_model", lambda _model: index),
            Writer(client, lambda _version: live, block_ms=200) as writer,
        ):
            thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
            thread.start()
            try:
                upserts = _upserts(client, store, version, new)
                deletes = _deletes(client, store, version, index, k, args)
            finally:
                stop.set()
                thread.join(30)

    up_ms = [u["seconds"] for u in upserts]
    del_ms = [d["seconds"] for d in deletes]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    up_ok = bool(up_ms) and max(up_ms) < 1.0 and all(u["ok"] for u in upserts)
    del_ok = bool(del_ms) and max(del_ms) < 1.0 and all(d["ok"] for d in deletes)
    print()
    print("| corpus | operation | n | p50 ms | p99 ms | max ms | lists | target | result |")
    print("|---|---|---:|---:|---:|---:|---|---|---|")
    held = [u["held_by"] for u in upserts]
    changed = [u["changed"] for u in upserts]
    print(
        f"| {len(base):,} | upsert, enqueue -> visible | {len(up_ms)} | "
        f"{percentile(up_ms, 50) * 1000:.1f} | {percentile(up_ms, 99) * 1000:.1f} | "
        f"{max(up_ms) * 1000:.1f} | written per upsert: mean {np.mean(changed):.0f}, max "
        f"{max(changed)}; neighbours' lists holding it: mean {np.mean(held):.1f} | "
        f"< 1 s | {verdict(up_ok)} |"
    )
    for d in deletes:
        print(
            f"| {len(base):,} | delete, enqueue -> gone | 1 | {d['seconds'] * 1000:.1f} | | | "
            f"held by {d['lists']}; after: in {d['still_holding']}, short lists "
            f"{d['short_lists']} | < 1 s | {verdict(d['ok'] and d['seconds'] < 1)} |"
        )
    print()
    print(f"writer in-process thread; peak RSS {rss_mb:,.0f} MB; {sys.version.split()[0]}")
    if args.json:
        args.json.write_text(json.dumps({"upserts": upserts, "deletes": deletes}, indent=1))
    return 0 if up_ok and del_ok else 1


def _upserts(
    client: Client, store: RedisStore, version: str, new: list[Article]
) -> list[dict[str, Any]]:
    out = []
    for number, article in enumerate(new, start=1):
        started = time.perf_counter()
        entry = updates.enqueue_upsert(client, article, by="api")
        ack = updates.wait_applied(client, entry, WAIT_S)
        read = store.related_articles(version, article.id)
        seconds = time.perf_counter() - started
        ok = ack is not None and ack["status"] == "applied" and read is not None
        held_by = 0
        if read is not None:
            for neighbour in read.neighbours:
                theirs = store.neighbours(version, neighbour.id) or []
                held_by += any(n.id == article.id for n in theirs)
        out.append(
            {
                "id": article.id,
                "seconds": seconds,
                "ok": ok,
                "changed": 0 if ack is None else int(ack["changed"]),
                "held_by": held_by,
            }
        )
        if number % 100 == 0:
            print(f"upserts: {number}", flush=True)
    return out


def _deletes(
    client: Client,
    store: RedisStore,
    version: str,
    index: IncrementalIndex,
    k: int,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    ids, neighbours, _ = index.snapshot()
    counts = np.bincount(neighbours[neighbours >= 0], minlength=len(ids))
    order = np.argsort(np.abs(counts - args.delete_lists), kind="stable")
    out = []
    for position in order[: args.deletes].tolist():
        victim = ids[position]
        holders = _lists_holding(index, victim)
        started = time.perf_counter()
        entry = updates.enqueue_delete(client, victim, by="api")
        ack = updates.wait_applied(client, entry, WAIT_S)
        seconds = time.perf_counter() - started
        still = short = 0
        for holder in holders:
            theirs = store.neighbours(version, holder) or []
            still += any(n.id == victim for n in theirs)
            short += len(theirs) < min(k, len(ids) - 2)
        gone = store.related_articles(version, victim) is None
        ok = ack is not None and ack["status"] == "applied" and still == 0 and gone
        out.append(
            {
                "id": victim,
                "seconds": seconds,
                "lists": len(holders),
                "still_holding": still,
                "short_lists": short,
                "ok": ok,
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
