"""What a publish keeps and what it deletes: old versions beyond ``--keep``, the leftovers of
publishes that died half-way, and update entries no kept version can replay.

Call these only while holding the publish lock (:func:`service.redis.publish.publish_lock`):
without it, a running publish would look dead and be swept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import redis

from service.redis import keys
from service.redis.client import text, with_retry
from service.redis.versions import current_version, listed, version_info

# Keys per pipeline, SCAN or ZADD of the batch jobs: a publish writing or deleting a version.
BATCH_SIZE = 1000
DEFAULT_KEEP = 2
# Update entries are trimmed from the stream this long before the oldest kept version's as_of:
# above the update writer's default replay margin (15 min), so a larger --replay-margin of up
# to an hour still finds its entries.
UPDATES_TRIM_MARGIN_S = 60 * 60


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
    """Delete the leftovers of publishes or deletions that died half-way; return their ids."""
    pending = [text(v) for v in with_retry(lambda: client.zrange(keys.PUBLISHING, 0, -1))]
    if not pending:
        return []
    keep = set(listed(client)) | _protected(client)
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
    names = listed(client, newest_first=True)
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
    stamps = []
    for name in listed(client):
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
