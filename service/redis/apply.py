"""The update writer's apply step: one stream entry onto the in-memory index of the live
version and, when it is new to Redis, into Redis in one MULTI/EXEC with its ack.

The loop around it (following the live version, replaying the stream, holding the lock) is
:class:`service.redis.writer.Writer`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from models.artifact import LoadedModel
from models.incremental import IncrementalIndex
from models.records import Article
from service.redis import keys
from service.redis.client import text, with_retry
from service.redis.encode import encode_article, index_list, section_name
from service.redis.entries import Entry
from service.redis.keys import utc_now
from service.redis.lock import TokenLock
from service.redis.queue import ACK_TTL_S

# One queued Redis command of an update's transaction.
Command = Callable[[Any], Any]


class WriterError(RuntimeError):
    """The writer cannot go on: no model for the live version, or it lost its lock."""


class LockLost(WriterError):
    """The lock stopped being ours mid-update (the run loop takes it again if it is free)."""


class VersionChanged(Exception):
    """The live version moved while an update was being written (the write was discarded)."""


@dataclass
class VersionState:
    """The writer's view of one version: its index and the Redis rows of its articles."""

    version: str
    loaded: LoadedModel
    index: IncrementalIndex
    rows: dict[str, int]
    articles: dict[str, Article]
    next_row: int
    applied: str
    start_ms: int
    base_articles: int
    checked: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"replayed": 0, "written": 0})


@dataclass
class Change:
    """The commands of one update and how many neighbour lists they rewrite."""

    commands: list[Command] = field(default_factory=list)
    lists: int = 0


def apply_entry(
    client: redis.Redis,
    lock: TokenLock,
    state: VersionState,
    entry: Entry,
    *,
    write: bool,
    ack: bool,
) -> dict[str, Any]:
    """Apply ``entry`` to the index; with ``write``, also to Redis (``ack``: push its result).

    Returns the result acked to whoever waits for the entry.
    """
    result: dict[str, Any] = {
        "entry": entry.id,
        "op": entry.op,
        "id": entry.article_id,
        "status": "applied",
        "changed": 0,
        "error": entry.error,
        "version": state.version,
    }
    change = Change()
    if entry.error is None and entry.op == "upsert":
        assert entry.article is not None
        change = _upsert(state, entry.article, write=write)
    elif entry.error is None and entry.op == "delete":
        if entry.article_id in state.index:
            change = _delete(state, entry.article_id, write=write)
        else:
            result["error"] = "unknown article id"
    if result["error"] is not None:
        result["status"] = "rejected"
    result["changed"] = change.lists
    if write:
        _commit(client, lock, state, entry, result, change.commands, ack=ack)
        state.applied = entry.id
    return result


def _upsert(state: VersionState, article: Article, *, write: bool) -> Change:
    """Apply an upsert to the index; with ``write``, return the commands to store it.

    Without ``write`` (a replay of what Redis already holds) only the index moves: the
    Redis rows are the final ones then, and may lack articles a later entry deleted.
    """
    old = state.articles.get(article.id)
    if old == article:
        return Change()  # an identical upsert (a replay) changes nothing
    changed = state.index.upsert(article)
    state.articles[article.id] = article
    if not write:
        return Change()
    version = state.version
    commands: list[Command] = []
    row = state.rows.get(article.id)
    if row is None:
        row = state.next_row
        state.next_row += 1
        state.rows[article.id] = row
        commands.append(lambda p: p.hset(keys.index_key(version), article.id, row))
    lists = _list_commands(state, changed)
    commands.extend(lists)
    encoded = encode_article(state.loaded.model, article)
    commands.append(lambda p: p.set(keys.meta_key(version, row), encoded.meta))
    commands.append(lambda p: p.zadd(keys.latest_key(version), {article.id: encoded.published}))
    old_section = section_name(old.section) if old is not None else ""
    if old_section and old_section != encoded.section:
        old_key = keys.latest_section_key(version, old_section)
        commands.append(lambda p: p.zrem(old_key, article.id))
    if encoded.section:
        section_key = keys.latest_section_key(version, encoded.section)
        commands.append(lambda p: p.zadd(section_key, {article.id: encoded.published}))
    info_key = keys.info_key(version)
    commands.append(lambda p: p.hincrby(info_key, "upserts", 1))
    return Change(commands, len(lists))


def _delete(state: VersionState, article_id: str, *, write: bool) -> Change:
    """Apply a delete to the index; with ``write``, return the commands to store it."""
    changed = state.index.delete(article_id)
    old = state.articles.pop(article_id)
    if not write:
        return Change()
    row = state.rows.pop(article_id)
    version = state.version
    info_key = keys.info_key(version)
    commands: list[Command] = [
        lambda p: p.hdel(keys.index_key(version), article_id),
        lambda p: p.delete(keys.neighbours_key(version, row), keys.meta_key(version, row)),
        lambda p: p.zrem(keys.latest_key(version), article_id),
    ]
    old_section = section_name(old.section)
    if old_section:
        section_key = keys.latest_section_key(version, old_section)
        commands.append(lambda p: p.zrem(section_key, article_id))
    lists = _list_commands(state, changed)
    commands.extend(lists)
    commands.append(lambda p: p.hincrby(info_key, "deletes", 1))
    return Change(commands, len(lists))


def _list_commands(state: VersionState, changed: set[str]) -> list[Command]:
    """SET of each changed list, encoded with Redis rows (an edit keeps its Redis row)."""
    out: list[Command] = []
    for article_id in sorted(changed):
        blob = index_list(state.index.neighbours(article_id), state.rows)
        key = keys.neighbours_key(state.version, state.rows[article_id])
        out.append(functools.partial(_set, key=key, blob=blob))
    return out


def _set(pipe: Any, *, key: str, blob: bytes) -> Any:
    return pipe.set(key, blob)


def _commit(
    client: redis.Redis,
    lock: TokenLock,
    state: VersionState,
    entry: Entry,
    result: dict[str, Any],
    commands: list[Command],
    *,
    ack: bool,
) -> None:
    """Write one entry's changes, its info fields and (with ``ack``) its ack in one MULTI/EXEC.

    WATCH on ``rs:current`` aborts the write if a publish or rollback flips the live
    version meanwhile, so a retired (maybe being deleted) version never gets keys back.
    """
    info_key = keys.info_key(state.version)
    info: dict[Any, Any] = {"applied": entry.id}
    if commands:
        info.update(
            articles=len(state.index),
            next_row=state.next_row,
            updated_at=utc_now(),
        )
    ack_blob = json.dumps(result, separators=(",", ":"))
    retried = False

    def attempt() -> None:
        nonlocal retried
        if retried:
            # The EXEC may have run before its reply was lost: then do not count it twice.
            done = with_retry(lambda: client.hget(info_key, "applied"))
            if done is not None and text(done) == entry.id:
                return
        retried = True
        if lock.lost.is_set():
            raise LockLost(f"lost the update writer lock {keys.UPDATE_LOCK}")
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.watch(keys.CURRENT)
                if text(pipe.get(keys.CURRENT) or b"") != state.version:
                    raise VersionChanged
                pipe.multi()
                for command in commands:
                    command(pipe)
                if commands:
                    pipe.hincrby(info_key, "seq", 1)
                    pipe.hsetnx(info_key, "base_articles", state.base_articles)
                pipe.hset(info_key, mapping=info)
                if ack:
                    pipe.lpush(keys.ack_key(entry.id), ack_blob)
                    pipe.expire(keys.ack_key(entry.id), ACK_TTL_S)
                pipe.execute()
        except redis.WatchError:
            raise VersionChanged from None

    # The transient-error policy of the whole package; anything else (a lost lock, a moved
    # version) is not retried.
    with_retry(attempt)
