"""Publishing model versions to Redis: write, flip, roll back, list and prune.

A publish writes every key of a new version under its own namespace, then flips
:data:`service.redis.keys.CURRENT` in one MULTI/EXEC, so a reader that reads the pointer once
and then only that namespace never sees a mix of two versions or a half-written one. Before
writing, the version is recorded in :data:`service.redis.keys.PUBLISHING`; a publish that dies
half-way leaves it there, and the next publish deletes its leftovers. These are plain
functions over a redis client (no Flask); the CLI in ``scripts/publish_cmd.py`` wraps them.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import redis

from models.artifact import LoadedModel, source_as_of
from models.ranking import published_timestamp
from service.redis import keys
from service.redis.client import execute, text, with_retry
from service.redis.keys import utc_now
from service.redis.lock import TokenLock

T = TypeVar("T")

BATCH_SIZE = 1000
DEFAULT_KEEP = 2
# A dead publisher's lock expires this long after its last batch.
LOCK_TTL_MS = 60_000
# Update entries are trimmed from the stream this long before the oldest kept version's as_of:
# above the update writer's default replay margin (15 min), so a larger --replay-margin of up
# to an hour still finds its entries.
UPDATES_TRIM_MARGIN_S = 60 * 60


class PublishError(RuntimeError):
    """A publish, rollback or cleanup that cannot proceed (the live version is untouched)."""


@dataclass(frozen=True)
class PublishResult:
    """What a publish did."""

    version: str
    articles: int
    previous: str | None
    pruned: list[str]
    cleaned: list[str]
    seconds: float
    already_published: bool = False


@dataclass(frozen=True)
class VersionRow:
    """One complete version as listed by ``recs versions``."""

    version: str
    built_at: str
    published_at: str | None
    articles: int
    k: int
    coverage: float | None
    current: bool
    # Incremental updates applied since the publish, and their share of the build's articles.
    upserts: int = 0
    deletes: int = 0
    drift: float = 0.0
    retrain_due: bool = False


def current_version(client: redis.Redis) -> str | None:
    """The live version id, or ``None`` when nothing is published."""
    value = with_retry(lambda: client.get(keys.CURRENT))
    return None if value is None else text(value)


def version_info(client: redis.Redis, version: str) -> dict[str, Any] | None:
    """The info hash of a version, decoded (numbers as numbers), or ``None`` if absent."""
    raw = with_retry(lambda: client.hgetall(keys.info_key(version)))
    if not raw:
        return None
    info: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
    for name in ("articles", "k", "next_row", "layout"):
        if name in info:
            info[name] = int(info[name])
    if "coverage" in info:
        info["coverage"] = float(info["coverage"])
    if "score_quantiles" in info:
        info["score_quantiles"] = json.loads(info["score_quantiles"])
    for name in ("published_at", "previous"):
        if info.get(name) == "":
            info[name] = None
    return info


def live_info(client: redis.Redis) -> dict[str, Any] | None:
    """Info of the live version (``None`` when nothing is published)."""
    version = current_version(client)
    return None if version is None else version_info(client, version)


def list_versions(client: redis.Redis, *, drift_threshold: float | None = None) -> list[VersionRow]:
    """Complete versions, newest first, with the live one marked and their update drift."""
    from service.redis.queue import DEFAULT_DRIFT_THRESHOLD, drift  # it imports this module

    threshold = DEFAULT_DRIFT_THRESHOLD if drift_threshold is None else drift_threshold
    current = current_version(client)
    names = [text(v) for v in with_retry(lambda: client.zrevrange(keys.VERSIONS, 0, -1))]
    rows = []
    for name in names:
        info = version_info(client, name) or {}
        moved = drift(info, threshold)
        rows.append(
            VersionRow(
                version=name,
                built_at=info.get("built_at", ""),
                published_at=info.get("published_at"),
                articles=int(info.get("articles", 0)),
                k=int(info.get("k", 0)),
                coverage=info.get("coverage"),
                current=name == current,
                upserts=moved["upserts"],
                deletes=moved["deletes"],
                drift=moved["share"],
                retrain_due=moved["retrain_due"],
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# The lock: one publish / rollback at a time, so a sweep never deletes a live writer's keys.
@contextmanager
def _publish_lock(client: redis.Redis) -> Iterator[Callable[[], None]]:
    """Hold the publish lock; yields the tick that refreshes it between batches."""
    lock = TokenLock(client, keys.PUBLISH_LOCK, LOCK_TTL_MS)
    if not lock.acquire():
        raise PublishError("another publish or rollback is running (lock held); try again later")

    def tick() -> None:
        if not lock.refresh():
            raise PublishError("lost the publish lock (publish took too long between batches)")

    try:
        yield tick
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------------
# Deleting versions.


def delete_version_keys(
    client: redis.Redis,
    version: str,
    *,
    batch: int = BATCH_SIZE,
    tick: Callable[[], None] | None = None,
) -> int:
    """UNLINK every key of a version (SCAN MATCH on its prefix, in batches); return the count.

    ``tick`` runs after each batch (publish refreshes its lock there).
    """
    pattern = keys.version_pattern(version)
    deleted = 0
    cursor: int = 0
    while True:
        cursor, found = with_retry(
            lambda c=cursor: client.scan(cursor=c, match=pattern, count=batch)  # type: ignore[misc]
        )
        if found:
            deleted += int(with_retry(lambda f=found: client.unlink(*f)))  # type: ignore[misc]
        if tick is not None:
            tick()
        if int(cursor) == 0:
            return deleted


def _drop_version(
    client: redis.Redis, version: str, tick: Callable[[], None] | None = None
) -> None:
    """Retire a complete version: mark it, unlist it, delete its keys, unmark it."""
    # Marked first, so a crash half-way leaves it for the next sweep to finish.
    with_retry(lambda: client.zadd(keys.PUBLISHING, {version: time.time()}))
    with_retry(lambda: client.zrem(keys.VERSIONS, version))
    delete_version_keys(client, version, tick=tick)
    with_retry(lambda: client.zrem(keys.PUBLISHING, version))


def _protected(client: redis.Redis) -> set[str]:
    """The live version and the one it replaced: never deleted."""
    current = current_version(client)
    if current is None:
        return set()
    info = version_info(client, current) or {}
    return {current} | ({info["previous"]} if info.get("previous") else set())


def cleanup_partial(client: redis.Redis, tick: Callable[[], None] | None = None) -> list[str]:
    """Delete the leftovers of publishes or deletions that died half-way; return their ids.

    Call only while holding the publish lock: without it, a running publish would look dead.
    """
    pending = [text(v) for v in with_retry(lambda: client.zrange(keys.PUBLISHING, 0, -1))]
    if not pending:
        return []
    listed = {text(v) for v in with_retry(lambda: client.zrange(keys.VERSIONS, 0, -1))}
    keep = listed | _protected(client)
    cleaned = []
    for version in pending:
        if version not in keep:
            delete_version_keys(client, version, tick=tick)
            cleaned.append(version)
        with_retry(lambda v=version: client.zrem(keys.PUBLISHING, v))  # type: ignore[misc]
    return cleaned


def prune(
    client: redis.Redis, keep: int = DEFAULT_KEEP, tick: Callable[[], None] | None = None
) -> list[str]:
    """Delete complete versions beyond the ``keep`` newest (never the live one or its previous)."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    names = [text(v) for v in with_retry(lambda: client.zrevrange(keys.VERSIONS, 0, -1))]
    protected = _protected(client) | set(names[:keep])
    dropped = [name for name in names if name not in protected]
    for name in dropped:
        _drop_version(client, name, tick)
    return dropped


def trim_updates(client: redis.Redis, margin_s: float = UPDATES_TRIM_MARGIN_S) -> int:
    """Drop update entries no kept version can replay: older than the oldest ``as_of - margin``.

    A version replays the entries since its ``as_of`` minus the writer's replay margin, when it
    goes live or is rolled back to; older entries are in every kept build's input already.
    Best effort (returns the count removed): the stream is also capped by MAXLEN.
    """
    names = [text(v) for v in with_retry(lambda: client.zrange(keys.VERSIONS, 0, -1))]
    stamps = []
    for name in names:
        as_of = with_retry(lambda n=name: client.hget(keys.info_key(n), "as_of"))  # type: ignore[misc]
        if not as_of:
            return 0  # a version without as_of (published before updates existed): keep all
        stamps.append(datetime.fromisoformat(text(as_of)).timestamp())
    if not stamps:
        return 0
    min_id = f"{max(0, int((min(stamps) - margin_s) * 1000))}-0"
    try:
        return int(with_retry(lambda: client.xtrim(keys.UPDATES, minid=min_id, approximate=False)))
    except redis.ResponseError:
        return 0  # Redis < 6.2 has no MINID: MAXLEN alone bounds the stream


# ---------------------------------------------------------------------------------------------
# Publishing.


def _batches(loaded: LoadedModel, batch: int) -> Iterator[tuple[int, list[bytes], list[bytes]]]:
    """Yield ``(first_row, neighbour blobs, meta blobs)`` per batch of rows."""
    model = loaded.model
    neighbours = np.asarray(model.neighbours_, dtype=keys.ROW_DTYPE)
    scores = keys.quantize_scores(np.asarray(model.scores_, dtype=np.float32))
    # Lists are -1 padded at the end: only the valid prefix is stored.
    counts = (neighbours >= 0).sum(axis=1)
    tag_lists = [model.tags_.tag_keys(article.tags) for article in loaded.articles]
    n = len(loaded.articles)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        nb = [
            neighbours[row, : counts[row]].tobytes() + scores[row, : counts[row]].tobytes()
            for row in range(start, stop)
        ]
        meta = [
            keys.encode_meta(
                a.id, a.title, a.url, a.section, a.published_at, a.image_url, a.tags, tag_lists[row]
            )
            for row, a in zip(range(start, stop), loaded.articles[start:stop], strict=True)
        ]
        yield start, nb, meta


def _info_mapping(loaded: LoadedModel) -> dict[Any, Any]:
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


def publish(
    client: redis.Redis,
    loaded: LoadedModel,
    *,
    keep: int = DEFAULT_KEEP,
    batch: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> PublishResult:
    """Write a model version to Redis, flip the live pointer to it and prune old versions.

    ``on_batch(n)`` runs after the n-th batch is written (1-based): a progress hook, and the
    way tests make a publish die half-way. Transient errors are retried here with backoff; give
    a client without retries of its own (see scripts/publish_cmd.connect), or they multiply.
    """
    if keep < 1:
        raise ValueError("keep must be >= 1")
    started = time.perf_counter()
    version = keys.check_version(loaded.version)
    with _publish_lock(client) as tick:
        cleaned = cleanup_partial(client, tick)
        previous = current_version(client)
        listed = with_retry(lambda: client.zscore(keys.VERSIONS, version)) is not None
        if not listed:
            try:
                _write_version(client, loaded, tick, batch, on_batch)
            except BaseException:
                _abandon(client, version)
                raise
        if previous != version:
            _flip(client, version, previous, first_publish=not listed)
        pruned = prune(client, keep, tick)
        trim_updates(client)
    return PublishResult(
        version=version,
        articles=len(loaded.articles),
        previous=previous if previous != version else None,
        pruned=pruned,
        cleaned=cleaned,
        seconds=time.perf_counter() - started,
        already_published=listed,
    )


def _write_version(
    client: redis.Redis,
    loaded: LoadedModel,
    tick: Callable[[], None],
    batch: int,
    on_batch: Callable[[int], None] | None,
) -> None:
    version = loaded.version
    # Marked before the first key is written: if this process dies, the next publish sweeps.
    with_retry(lambda: client.zadd(keys.PUBLISHING, {version: time.time()}))
    for number, (start, nb, meta) in enumerate(_batches(loaded, batch), start=1):
        ids = {a.id: start + i for i, a in enumerate(loaded.articles[start : start + len(nb)])}
        write = functools.partial(
            _write_batch, version=version, start=start, nb=nb, meta=meta, ids=ids
        )
        # Every command is an idempotent overwrite, so re-sending a batch after a dropped
        # connection is safe.
        execute(client, write, transaction=False)
        tick()
        if on_batch is not None:
            on_batch(number)
    # Idempotent ZADDs: a retried pipeline rewrites the same members and scores.
    execute(client, functools.partial(_write_latest, loaded=loaded), transaction=False)
    # The info hash goes last: its presence means the namespace is complete.
    with_retry(lambda: client.hset(keys.info_key(version), mapping=_info_mapping(loaded)))


def _write_latest(pipe: redis.client.Pipeline, *, loaded: LoadedModel) -> None:
    """Queue the version's "latest" sorted sets: all articles, and one per section."""
    version = loaded.version
    everything: dict[Any, Any] = {}
    sections: dict[str, dict[Any, Any]] = {}
    for article in loaded.articles:
        stamp = published_timestamp(article.published_at)
        everything[article.id] = stamp
        if article.section.strip():
            sections.setdefault(article.section.casefold(), {})[article.id] = stamp
    # Chunked: one huge ZADD would block Redis for every other client meanwhile.
    for key, members in [(keys.latest_key(version), everything)] + [
        (keys.latest_section_key(version, name), m) for name, m in sections.items()
    ]:
        items = list(members.items())
        for start in range(0, len(items), BATCH_SIZE):
            pipe.zadd(key, dict(items[start : start + BATCH_SIZE]))


def _abandon(client: redis.Redis, version: str) -> None:
    """Best-effort removal of a failed publish's keys; if Redis is gone, the next sweep does it."""
    try:
        # One quick probe first: after a lost connection, retrying every SCAN just delays exit.
        client.ping()
        delete_version_keys(client, version)
        client.zrem(keys.PUBLISHING, version)
    except redis.RedisError:
        pass


def _write_batch(
    pipe: redis.client.Pipeline,
    *,
    version: str,
    start: int,
    nb: list[bytes],
    meta: list[bytes],
    ids: dict[Any, Any],
) -> None:
    """Queue one batch of rows: neighbour and meta keys, and their id -> row entries."""
    blobs: dict[Any, Any] = {}
    for offset, (nb_blob, meta_blob) in enumerate(zip(nb, meta, strict=True)):
        blobs[keys.neighbours_key(version, start + offset)] = nb_blob
        blobs[keys.meta_key(version, start + offset)] = meta_blob
    # One MSET per batch: a few replies to parse instead of thousands, most of the client time.
    pipe.mset(blobs)
    pipe.hset(keys.index_key(version), mapping=ids)


def _flip(client: redis.Redis, version: str, previous: str | None, *, first_publish: bool) -> None:
    """Make ``version`` live in one transaction (pointer, listing, publish time, previous)."""
    published: dict[Any, Any] = {"published_at": utc_now(), "previous": previous or ""}

    def flip(pipe: redis.client.Pipeline) -> None:
        pipe.set(keys.CURRENT, version)
        if first_publish:
            pipe.zadd(keys.VERSIONS, {version: time.time()})
        pipe.zrem(keys.PUBLISHING, version)
        pipe.hset(keys.info_key(version), mapping=published)

    execute(client, flip, transaction=True)


def rollback(client: redis.Redis, to: str | None = None) -> tuple[str, str]:
    """Make the previous version (or ``to``) live again; return ``(old, new)`` live versions."""
    with _publish_lock(client):
        current = current_version(client)
        if current is None:
            raise PublishError("nothing is published; nothing to roll back")
        listed = [text(v) for v in with_retry(lambda: client.zrevrange(keys.VERSIONS, 0, -1))]
        if to is not None:
            keys.check_version(to)
            if to not in listed:
                raise PublishError(f"version {to} is not published (see 'recs versions')")
            target = to
        else:
            info = version_info(client, current) or {}
            candidate = info.get("previous")
            if candidate not in listed or candidate == current:
                # The chain is broken (pruned, or a rollback to it already happened): take the
                # newest version listed before the current one.
                position = listed.index(current) if current in listed else -1
                older = listed[position + 1 :] if position >= 0 else []
                candidate = older[0] if older else None
            if candidate is None:
                raise PublishError(f"no earlier version than {current} to roll back to")
            target = candidate
        if target == current:
            raise PublishError(f"version {target} is already live")
        stamp = utc_now()

        def flip(pipe: redis.client.Pipeline) -> None:
            pipe.set(keys.CURRENT, target)
            # Published-at means "made live", so a rollback stamps it; "previous" keeps the
            # chain, so a second rollback goes one step further back.
            pipe.hset(keys.info_key(target), "published_at", stamp)

        execute(client, flip, transaction=True)
    return current, target
