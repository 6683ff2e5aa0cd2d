"""Writing one model version's keys under its own namespace, in batches (before any flip).

The version is recorded in :data:`service.redis.keys.PUBLISHING` before its first key and its
info hash is written last, so a namespace with an info hash is complete and one without is
swept by the next publish (:func:`service.redis.retention.cleanup_partial`).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import redis

from models.artifact import LoadedModel, source_as_of
from service.redis import keys
from service.redis.client import ANY_ERROR, execute, with_retry
from service.redis.encode import EncodedArticle, encode_article, model_lists
from service.redis.retention import BATCH_SIZE, delete_version_keys


def batches(
    loaded: LoadedModel, batch: int
) -> Iterator[tuple[int, list[bytes], list[EncodedArticle]]]:
    """Yield ``(first_row, neighbour blobs, encoded articles)`` per batch of rows."""
    model = loaded.model
    neighbours = np.asarray(model.neighbours_, dtype=keys.ROW_DTYPE)
    scores = keys.quantize_scores(np.asarray(model.scores_, dtype=np.float32))
    n = len(loaded.articles)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        lists = model_lists(neighbours[start:stop], scores[start:stop])
        articles = [encode_article(model, a) for a in loaded.articles[start:stop]]
        yield start, lists, articles


def info_mapping(loaded: LoadedModel) -> dict[Any, Any]:
    """The info hash of a freshly written version (the flip adds ``published_at``)."""
    counts = loaded.manifest.get("counts", {})
    n = len(loaded.articles)
    return {
        "version": loaded.version,
        "built_at": str(loaded.manifest.get("created_at", "")),
        "published_at": "",
        "previous": "",
        "articles": n,
        "k": int(loaded.model.neighbours_.shape[1]),
        "coverage": float(counts.get("coverage", loaded.model.coverage())),
        "score_quantiles": json.dumps(counts.get("score_quantiles", {}), sort_keys=True),
        "config_hash": str(loaded.manifest.get("config_hash", "")),
        # When the build's input was read: incremental updates since then (minus a margin)
        # are replayed onto this version by the update writer (service/redis/queue.py).
        "as_of": source_as_of(loaded.manifest),
        "next_row": n,
        "layout": keys.LAYOUT,
    }


def write_version(
    client: redis.Redis,
    loaded: LoadedModel,
    tick: Callable[[], None],
    batch: int,
    on_batch: Callable[[int], None] | None,
) -> None:
    """Write every key of ``loaded``'s version; ``tick`` after each batch, then ``on_batch(n)``."""
    version = loaded.version
    # Marked before the first key is written: if this process dies, the next publish sweeps.
    with_retry(lambda: client.zadd(keys.PUBLISHING, {version: time.time()}))
    latest: dict[Any, Any] = {}
    sections: dict[str, dict[Any, Any]] = {}
    for number, (start, lists, articles) in enumerate(batches(loaded, batch), start=1):
        write = functools.partial(
            _write_batch, version=version, start=start, lists=lists, articles=articles
        )
        # Every command is an idempotent overwrite, so re-sending a batch after a dropped
        # connection is safe.
        execute(client, write, transaction=False)
        for article in articles:
            latest[article.id] = article.published
            if article.section:
                sections.setdefault(article.section, {})[article.id] = article.published
        tick()
        if on_batch is not None:
            on_batch(number)
    # Idempotent ZADDs: a retried pipeline rewrites the same members and scores.
    write_latest = functools.partial(
        _write_latest, version=version, latest=latest, sections=sections
    )
    execute(client, write_latest, transaction=False)
    # The info hash goes last: its presence means the namespace is complete.
    with_retry(lambda: client.hset(keys.info_key(version), mapping=info_mapping(loaded)))


def _write_batch(
    pipe: redis.client.Pipeline,
    *,
    version: str,
    start: int,
    lists: list[bytes],
    articles: list[EncodedArticle],
) -> None:
    """Queue one batch of rows: neighbour and meta keys, and their id -> row entries."""
    blobs: dict[Any, Any] = {}
    ids: dict[Any, Any] = {}
    for offset, (blob, article) in enumerate(zip(lists, articles, strict=True)):
        blobs[keys.neighbours_key(version, start + offset)] = blob
        blobs[keys.meta_key(version, start + offset)] = article.meta
        ids[article.id] = start + offset
    # One MSET per batch: a few replies to parse instead of thousands, most of the client time.
    pipe.mset(blobs)
    pipe.hset(keys.index_key(version), mapping=ids)


def _write_latest(
    pipe: redis.client.Pipeline,
    *,
    version: str,
    latest: dict[Any, Any],
    sections: dict[str, dict[Any, Any]],
) -> None:
    """Queue the version's "latest" sorted sets: all articles, and one per section."""
    # Chunked: one huge ZADD would block Redis for every other client meanwhile.
    for key, members in [(keys.latest_key(version), latest)] + [
        (keys.latest_section_key(version, name), m) for name, m in sections.items()
    ]:
        items = list(members.items())
        for start in range(0, len(items), BATCH_SIZE):
            pipe.zadd(key, dict(items[start : start + BATCH_SIZE]))


def abandon(client: redis.Redis, version: str) -> None:
    """Best-effort removal of a failed publish's keys; if Redis is gone, the next sweep does it."""
    try:
        # One quick probe first: after a lost connection, retrying every SCAN just delays exit.
        client.ping()
        delete_version_keys(client, version)
        client.zrem(keys.PUBLISHING, version)
    except ANY_ERROR:
        pass
