"""Publishing model versions to Redis: write, flip, roll back, under one lock.

A publish writes every key of a new version under its own namespace
(:mod:`service.redis.upload`), then flips :data:`service.redis.keys.CURRENT` in one MULTI/EXEC,
so a reader that reads the pointer once and then only that namespace never sees a mix of two
versions or a half-written one. Before writing, the version is recorded in
:data:`service.redis.keys.PUBLISHING`; a publish that dies half-way leaves it there, and the next
publish deletes its leftovers (:mod:`service.redis.retention`). These are plain functions over a
redis client (no Flask); the CLI in ``scripts/publish_cmd.py`` wraps them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from models.artifact import LoadedModel
from service.redis import keys
from service.redis.client import execute, with_retry
from service.redis.keys import utc_now
from service.redis.lock import TokenLock
from service.redis.retention import BATCH_SIZE, DEFAULT_KEEP, cleanup_partial, prune, trim_updates
from service.redis.upload import abandon, write_version
from service.redis.versions import current_version, listed, version_info

# A dead publisher's lock expires this long after its last batch.
LOCK_TTL_MS = 60_000


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


@contextmanager
def publish_lock(client: redis.Redis) -> Iterator[Callable[[], None]]:
    """Hold the publish lock (one publish or rollback at a time, so a sweep never deletes a live
    writer's keys); yields the tick that refreshes it between batches."""
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
    with publish_lock(client) as tick:
        cleaned = cleanup_partial(client, tick)
        previous = current_version(client)
        already = with_retry(lambda: client.zscore(keys.VERSIONS, version)) is not None
        if not already:
            try:
                write_version(client, loaded, tick, batch, on_batch)
            except BaseException:
                abandon(client, version)
                raise
        if previous != version:
            _flip(client, version, previous, first_publish=not already)
        pruned = prune(client, keep, tick)
        trim_updates(client)
    return PublishResult(
        version=version,
        articles=len(loaded.articles),
        previous=previous if previous != version else None,
        pruned=pruned,
        cleaned=cleaned,
        seconds=time.perf_counter() - started,
        already_published=already,
    )


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
    with publish_lock(client):
        current = current_version(client)
        if current is None:
            raise PublishError("nothing is published; nothing to roll back")
        names = listed(client, newest_first=True)
        if to is not None:
            keys.check_version(to)
            if to not in names:
                raise PublishError(f"version {to} is not published (see 'recs versions')")
            target = to
        else:
            info = version_info(client, current) or {}
            candidate = info.get("previous")
            if candidate not in names or candidate == current:
                # The chain is broken (pruned, or a rollback to it already happened): take the
                # newest version listed before the current one.
                position = names.index(current) if current in names else -1
                older = names[position + 1 :] if position >= 0 else []
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
