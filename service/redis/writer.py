"""The one writer of incremental updates: applies the queue of :mod:`service.redis.queue` to Redis.

``recs worker`` (or ``recs upsert``/``recs delete`` when no worker runs) holds
:data:`service.redis.keys.UPDATE_LOCK` and applies the stream's entries in order to the live
version, each in a single MULTI/EXEC with its ack. It keeps the fitted model and an
:class:`models.incremental.IncrementalIndex` in memory, so it is kept out of the API's
imports: the API only enqueues (see :mod:`service.redis.queue` for the queue and the reconcile
rule).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from models import jsonsafe
from models.artifact import LoadedModel, source_as_of
from models.incremental import IncrementalIndex
from models.ranking import published_timestamp
from models.records import Article, RecordError, article_from_mapping, validate_id
from service.redis import keys
from service.redis.client import RETRIES, RETRY_BASE_DELAY, TRANSIENT, text, with_retry
from service.redis.keys import utc_now
from service.redis.lock import TokenLock
from service.redis.queue import ACK_TTL_S

log = logging.getLogger(__name__)

# The writer lock expires this long after the writer stops refreshing it (a crash).
LOCK_TTL_MS = 30_000
LOCK_REFRESH_S = 5.0
# Entries replayed from this long before a version's ``as_of`` (clock skew between the host
# that read the build's input and Redis, and files written while they were read).
DEFAULT_REPLAY_MARGIN_S = 15 * 60
# How long one XREAD waits for new entries before the writer checks the live version again.
BLOCK_MS = 500
# While nothing is published the writer polls rs:current, backing off from BLOCK_MS to this.
MAX_IDLE_WAIT_S = 5.0
# Stream entries fetched per read.
READ_COUNT = 100
OPS = ("upsert", "delete")


class WriterError(RuntimeError):
    """The writer cannot go on: no model for the live version, or it lost its lock."""


class _LockLost(WriterError):
    """The lock stopped being ours mid-update (the run loop takes it again if it is free)."""


class _VersionChanged(Exception):
    """The live version moved while an update was being written (the write was discarded)."""


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _before(ms: int) -> str:
    """The stream id just before ``ms``-0 (XREAD returns entries after the id it is given)."""
    return f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0-0"


def _iso_ms(stamp: str) -> int:
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True)
class Entry:
    """One decoded stream entry; ``error`` is set when it cannot be applied (a bad record)."""

    id: str
    op: str
    article_id: str
    article: Article | None = None
    error: str | None = None


def parse_entry(entry_id: str, fields: Mapping[Any, Any]) -> Entry:
    """Decode and validate a stream entry with the same rules as an article file."""
    values = {text(k): text(v) for k, v in fields.items()}
    op, article_id = values.get("op", ""), values.get("id", "")
    if op not in OPS:
        return Entry(entry_id, op, article_id, error=f"field 'op': must be one of {OPS}")
    try:
        validate_id(article_id, source=f"{keys.UPDATES} {entry_id}")
        if op == "delete":
            return Entry(entry_id, op, article_id)
        try:
            data = jsonsafe.loads(values.get("article", ""))
        except jsonsafe.JSONInputError as exc:
            return Entry(entry_id, op, article_id, error=f"field 'article': {exc.reason}")
        article = article_from_mapping(data, source=f"{keys.UPDATES} {entry_id}")
    except RecordError as exc:
        where = f"field '{exc.field}': " if exc.field else ""
        return Entry(entry_id, op, article_id, error=f"{where}{exc.reason}")
    if article.id != article_id:
        return Entry(entry_id, op, article_id, error="field 'id': differs from the entry's id")
    return Entry(entry_id, op, article_id, article)


class WriterLock(TokenLock):
    """The update writer's lock on :data:`service.redis.keys.UPDATE_LOCK`, refreshed by a
    thread for as long as the writer runs."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_ms: int = LOCK_TTL_MS,
        refresh_s: float = LOCK_REFRESH_S,
    ) -> None:
        super().__init__(client, keys.UPDATE_LOCK, ttl_ms)
        self.refresh_s = refresh_s

    def acquire(self) -> bool:
        """Take the lock and keep it alive; False when another writer holds it."""
        if not super().acquire():
            return False
        self.keep_alive(self.refresh_s)
        return True

    def regain(self) -> bool:
        """After :attr:`lost`: take the lock again if nobody holds it; False if someone does.

        The key vanishes when Redis is flushed or restarts empty (or it expired while this
        process stalled). SET NX still admits only one taker; the caller drops what it held
        in memory, since another writer may have run in between.
        """
        self.stop_refreshing()  # its thread stopped when it saw the loss
        return self.acquire()


@dataclass
class _State:
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


ResultHook = Callable[[dict[str, Any]], None]
# One queued Redis command of an update's transaction.
Command = Callable[[Any], Any]


@dataclass
class _Change:
    """The commands of one update and how many neighbour lists they rewrite."""

    commands: list[Command] = field(default_factory=list)
    lists: int = 0


class Writer:
    """Applies ``rs:updates`` to the live version; only the holder of the update lock may run.

    ``load_model(version)`` returns the model directory of a published version (its manifest
    version must be that version). ``on_result`` runs after each entry is written (tests read
    :attr:`index` there). Use as a context manager: it takes the lock, or raises WriterError.
    """

    def __init__(
        self,
        client: redis.Redis,
        load_model: Callable[[str], LoadedModel],
        *,
        replay_margin_s: float = DEFAULT_REPLAY_MARGIN_S,
        block_ms: int = BLOCK_MS,
        lock: WriterLock | None = None,
        on_result: ResultHook | None = None,
    ) -> None:
        self.client = client
        self.load_model = load_model
        self.replay_margin_s = replay_margin_s
        self.block_ms = block_ms
        self.lock = lock or WriterLock(client)
        self.on_result = on_result
        self._state: _State | None = None
        # Last entry read from the stream (XREAD continues after it).
        self._position = "0-0"
        # Last entry acknowledged: a replay onto a new version re-applies without re-acking.
        self._acked = "0-0"
        # Current wait between polls while nothing is published (0: not waiting).
        self._idle_wait = 0.0
        # The last version seen live (kept when the state is dropped, for the waiting log).
        self._last_live: str | None = None

    # ------------------------------------------------------------------------------ the lock
    def __enter__(self) -> Writer:
        if not self.lock.acquire():
            holder = text(self.client.get(keys.UPDATE_LOCK) or b"?")
            raise WriterError(f"another update writer holds {keys.UPDATE_LOCK} ({holder})")
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    # ------------------------------------------------------------------------------ state
    @property
    def version(self) -> str | None:
        """The version the writer is applying to (None before the first sync)."""
        return None if self._state is None else self._state.version

    @property
    def index(self) -> IncrementalIndex | None:
        """The live version's index (it reflects every entry written so far)."""
        return None if self._state is None else self._state.index

    def sync(self) -> bool:
        """Follow ``rs:current``: load and catch up a new live version. False: none is live."""
        while True:
            live = with_retry(lambda: self.client.get(keys.CURRENT))
            if live is None:
                self._state = None
                return False
            version = text(live)
            # A version seen ends a wait: its disappearance is news again (and logged).
            self._last_live, self._idle_wait = version, 0.0
            if self._state is not None and self._state.version == version:
                return True
            # Loops again if the live version moved during the catch-up (state dropped).
            self._switch(version)

    def _switch(self, version: str) -> None:
        """Load ``version``'s model and index, then catch up on the stream since its as_of."""
        self._state = None
        started = time.perf_counter()
        state = self._load(version)
        self._state = state
        # Entries from as_of - margin: those up to ``applied`` are in Redis already (replayed
        # into the index only), the later ones are written.
        self._position = _before(state.start_ms)
        self._catch_up()
        if self._state is state:
            log.info(
                "writer on %s: %d update(s) replayed, %d written, in %.1f s",
                version,
                state.counts["replayed"],
                state.counts["written"],
                time.perf_counter() - started,
            )

    def _load(self, version: str) -> _State:
        raw = with_retry(lambda: self.client.hgetall(keys.info_key(version)))
        info = {text(k): text(v) for k, v in raw.items()}
        if not info:
            raise WriterError(f"live version {version} has no info hash in Redis")
        try:
            loaded = self.load_model(version)
        except WriterError:
            raise
        except (ValueError, OSError) as exc:
            raise WriterError(f"cannot load the model of live version {version}: {exc}") from None
        if loaded.version != version:
            raise WriterError(
                f"the model at {loaded.path} is version {loaded.version}, but {version} is live"
            )
        as_of = info.get("as_of") or source_as_of(loaded.manifest)
        index_raw = with_retry(lambda: self.client.hgetall(keys.index_key(version)))
        return _State(
            version=version,
            loaded=loaded,
            index=IncrementalIndex.from_model(loaded.model),
            rows={text(k): int(v) for k, v in index_raw.items()},
            articles={a.id: a for a in loaded.articles},
            next_row=int(info.get("next_row", len(loaded.articles))),
            applied=info.get("applied", "0-0"),
            start_ms=max(0, _iso_ms(as_of) - int(self.replay_margin_s * 1000)) if as_of else 0,
            base_articles=int(info.get("base_articles", len(loaded.articles))),
        )

    # ------------------------------------------------------------------------------ reading
    def _catch_up(self) -> None:
        """Process every entry after the position, to the end of the stream (no blocking)."""
        state = self._state
        while state is not None and self._state is state:
            batch: Any = with_retry(
                lambda: self.client.xrange(
                    keys.UPDATES, min=f"({self._position}", max="+", count=READ_COUNT
                )
            )
            if not batch:
                break
            self._process(batch)
        if state is not None and self._state is state:
            self._check(state)

    def _check(self, state: _State) -> None:
        """After the replay without writes, the index must hold exactly Redis's articles."""
        if state.checked:
            return
        unknown = set(state.index.ids) ^ set(state.rows)
        if unknown:
            self._state = None
            raise WriterError(
                f"version {state.version} in Redis and its model plus the replayed updates"
                f" disagree on {len(unknown)} article(s) (e.g. {sorted(unknown)[:3]}):"
                " entries were trimmed from the stream or the replay margin changed;"
                " publish a fresh build"
            )
        state.checked = True

    def poll(self, block_ms: int | None = None) -> int:
        """Sync, then wait up to ``block_ms`` for new entries and apply them; return the count."""
        if not self.sync():
            return 0
        wait = self.block_ms if block_ms is None else block_ms
        reply: Any = with_retry(
            lambda: self.client.xread(
                {keys.UPDATES: self._position}, count=READ_COUNT, block=wait or None
            )
        )
        if isinstance(reply, dict):  # RESP3 clients answer with a map
            reply = list(reply.items())
        entries = [entry for _, stream_entries in reply or [] for entry in stream_entries]
        return self._process(entries)

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Apply updates until ``stop`` is set (``once``: until the stream is drained).

        While nothing is published (a Redis that restarted empty, a FLUSHALL) the writer waits
        for a version, and a lock that vanished with the data is taken again. A Redis outage
        is waited out (the queue and the versions persist), except with ``once``, where it is
        raised, as is "nothing is published".
        """
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if self.lock.lost.is_set():
                    self._regain_lock()
                if self._step(once, stop):
                    return
            except _LockLost:
                continue  # the next turn takes the lock again, or says who holds it
            except TRANSIENT as exc:
                if once:
                    raise
                log.warning("redis unavailable (%s); retrying", exc)
                stop.wait(1.0)

    def _regain_lock(self) -> None:
        """Take the lost lock again, or raise WriterError naming the writer that holds it.

        What the writer holds in memory may no longer match Redis (its keys may be gone, or
        another writer applied updates meanwhile), so it is dropped: the next sync reloads the
        live version, if any, and replays the stream onto it.
        """
        self._state = None
        if not self.lock.regain():
            holder = text(with_retry(lambda: self.client.get(keys.UPDATE_LOCK)) or b"?")
            raise WriterError(f"lost the update writer lock {keys.UPDATE_LOCK} to {holder}")
        log.warning(
            "the update writer lock %s had vanished (Redis flushed or restarted empty?);"
            " took it again",
            keys.UPDATE_LOCK,
        )

    def _step(self, once: bool, stop: threading.Event) -> bool:
        """One turn of :meth:`run`; True when a ``once`` run is done."""
        if not self.sync():
            if once:
                raise WriterError("nothing is published: no live version to update")
            self._wait_for_a_version(self._last_live, stop)
            return False
        if once:
            self._catch_up()
            # None: the live version moved while draining; the next turn catches up on it.
            return self._state is not None
        self.poll()
        return False

    def _wait_for_a_version(self, previous: str | None, stop: threading.Event) -> None:
        """Sleep before polling rs:current again; log once per wait, backing off to a cap."""
        if not self._idle_wait:
            if previous is None:
                log.info("nothing is published yet; waiting for a version")
            else:
                log.warning(
                    "live version %s is gone (Redis flushed or restarted empty?);"
                    " waiting for a version",
                    previous,
                )
        first = max(self.block_ms / 1000, 0.05)
        self._idle_wait = min(MAX_IDLE_WAIT_S, max(first, self._idle_wait * 2))
        stop.wait(self._idle_wait)

    # ------------------------------------------------------------------------------ applying
    def _process(self, entries: Iterable[tuple[Any, Mapping[Any, Any]]]) -> int:
        """Apply entries in order; stops early when the live version moved under a write."""
        done = 0
        for raw_id, fields in entries:
            state = self._state
            if state is None:
                break
            entry = parse_entry(text(raw_id), fields)
            write = _entry_key(entry.id) > _entry_key(state.applied)
            if write:
                self._check(state)
            try:
                result = self._apply(state, entry, write=write)
            except _VersionChanged:
                # The index is ahead of Redis now: drop it; the next sync reloads and replays.
                self._state = None
                break
            except TRANSIENT:
                # Whether the write landed is unknown: rebuild from Redis and the stream.
                self._state = None
                raise
            self._position = entry.id
            done += 1
            if write:
                state.counts["written"] += 1
                if _entry_key(entry.id) > _entry_key(self._acked):
                    self._acked = entry.id
                if self.on_result is not None:
                    self.on_result(result)
            else:
                state.counts["replayed"] += 1
        return done

    def _apply(self, state: _State, entry: Entry, *, write: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "entry": entry.id,
            "op": entry.op,
            "id": entry.article_id,
            "status": "applied",
            "changed": 0,
            "error": entry.error,
            "version": state.version,
        }
        change = _Change()
        if entry.error is None and entry.op == "upsert":
            assert entry.article is not None
            change = self._upsert(state, entry.article, write=write)
        elif entry.error is None and entry.op == "delete":
            if entry.article_id in state.index:
                change = self._delete(state, entry.article_id, write=write)
            else:
                result["error"] = "unknown article id"
        if result["error"] is not None:
            result["status"] = "rejected"
        result["changed"] = change.lists
        if write:
            self._commit(state, entry, result, change.commands)
            state.applied = entry.id
        return result

    def _upsert(self, state: _State, article: Article, *, write: bool) -> _Change:
        """Apply an upsert to the index; with ``write``, return the commands to store it.

        Without ``write`` (a replay of what Redis already holds) only the index moves: the
        Redis rows are the final ones then, and may lack articles a later entry deleted.
        """
        old = state.articles.get(article.id)
        if old == article:
            return _Change()  # an identical upsert (a replay) changes nothing
        changed = state.index.upsert(article)
        state.articles[article.id] = article
        if not write:
            return _Change()
        version = state.version
        commands: list[Command] = []
        row = state.rows.get(article.id)
        if row is None:
            row = state.next_row
            state.next_row += 1
            state.rows[article.id] = row
            commands.append(lambda p: p.hset(keys.index_key(version), article.id, row))
        lists = self._list_commands(state, changed)
        commands.extend(lists)
        meta = keys.encode_meta(
            article.id,
            article.title,
            article.url,
            article.section,
            article.published_at,
            article.image_url,
            article.tags,
            state.loaded.model.tags_.tag_keys(article.tags),
        )
        commands.append(lambda p: p.set(keys.meta_key(version, row), meta))
        stamp = published_timestamp(article.published_at)
        commands.append(lambda p: p.zadd(keys.latest_key(version), {article.id: stamp}))
        old_section = old.section.casefold() if old is not None else ""
        section = article.section.casefold() if article.section.strip() else ""
        if old_section.strip() and old_section != section:
            old_key = keys.latest_section_key(version, old_section)
            commands.append(lambda p: p.zrem(old_key, article.id))
        if section:
            section_key = keys.latest_section_key(version, section)
            commands.append(lambda p: p.zadd(section_key, {article.id: stamp}))
        info_key = keys.info_key(version)
        commands.append(lambda p: p.hincrby(info_key, "upserts", 1))
        return _Change(commands, len(lists))

    def _delete(self, state: _State, article_id: str, *, write: bool) -> _Change:
        """Apply a delete to the index; with ``write``, return the commands to store it."""
        changed = state.index.delete(article_id)
        old = state.articles.pop(article_id)
        if not write:
            return _Change()
        row = state.rows.pop(article_id)
        version = state.version
        info_key = keys.info_key(version)
        commands: list[Command] = [
            lambda p: p.hdel(keys.index_key(version), article_id),
            lambda p: p.delete(keys.neighbours_key(version, row), keys.meta_key(version, row)),
            lambda p: p.zrem(keys.latest_key(version), article_id),
        ]
        if old.section.strip():
            section_key = keys.latest_section_key(version, old.section)
            commands.append(lambda p: p.zrem(section_key, article_id))
        lists = self._list_commands(state, changed)
        commands.extend(lists)
        commands.append(lambda p: p.hincrby(info_key, "deletes", 1))
        return _Change(commands, len(lists))

    def _list_commands(self, state: _State, changed: set[str]) -> list[Command]:
        """SET of each changed list, encoded with Redis rows (an edit keeps its Redis row)."""
        out: list[Command] = []
        for article_id in sorted(changed):
            pairs = state.index.neighbours(article_id)
            rows = np.array([state.rows[n] for n, _ in pairs], dtype=keys.ROW_DTYPE)
            scores = np.array([s for _, s in pairs], dtype=np.float32)
            blob = keys.encode_neighbours(rows, scores)
            key = keys.neighbours_key(state.version, state.rows[article_id])
            out.append(functools.partial(_set, key=key, blob=blob))
        return out

    def _commit(
        self,
        state: _State,
        entry: Entry,
        result: dict[str, Any],
        commands: list[Command],
    ) -> None:
        """Write one entry's changes, its info fields and its ack in one MULTI/EXEC.

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
        ack = _entry_key(entry.id) > _entry_key(self._acked)
        ack_blob = json.dumps(result, separators=(",", ":"))
        for attempt in range(RETRIES + 1):
            if self.lock.lost.is_set():
                raise _LockLost(f"lost the update writer lock {keys.UPDATE_LOCK}")
            try:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.watch(keys.CURRENT)
                    if text(pipe.get(keys.CURRENT) or b"") != state.version:
                        raise _VersionChanged
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
                return
            except redis.WatchError:
                raise _VersionChanged from None
            except TRANSIENT:
                if attempt == RETRIES:
                    raise
                time.sleep(RETRY_BASE_DELAY * 2**attempt)
                # The EXEC may have run before its reply was lost: then do not count it twice.
                done = with_retry(lambda: self.client.hget(info_key, "applied"))
                if done is not None and text(done) == entry.id:
                    return


def _set(pipe: Any, *, key: str, blob: bytes) -> Any:
    return pipe.set(key, blob)
