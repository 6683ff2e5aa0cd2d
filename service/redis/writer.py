"""The one writer of incremental updates: applies the queue of :mod:`service.redis.queue` to Redis.

``recs worker`` (or ``recs upsert``/``recs delete`` when no worker runs) holds
:data:`service.redis.keys.UPDATE_LOCK` and applies the stream's entries in order to the live
version, each in a single MULTI/EXEC with its ack. It keeps the fitted model and an
:class:`models.incremental.IncrementalIndex` in memory, so it is kept out of the API's
imports: the API only enqueues (see :mod:`service.redis.queue` for the queue and the reconcile
rule). This module is the loop: the lock, following the live version, replaying the stream; one
entry's apply step is :mod:`service.redis.apply`, the stream's entries :mod:`service.redis.entries`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis

from models.artifact import LoadedModel, source_as_of
from models.incremental import IncrementalIndex
from service.redis import keys
from service.redis.apply import LockLost, VersionChanged, VersionState, WriterError, apply_entry
from service.redis.client import TRANSIENT, text, with_retry
from service.redis.entries import before, entry_key, iso_ms, parse_entry
from service.redis.lock import TokenLock
from service.redis.versions import version_info

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


ResultHook = Callable[[dict[str, Any]], None]


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
        self._state: VersionState | None = None
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
            holder = self.lock.holder() or "?"
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
        self._position = before(state.start_ms)
        self._catch_up()
        if self._state is state:
            log.info(
                "writer on %s: %d update(s) replayed, %d written, in %.1f s",
                version,
                state.counts["replayed"],
                state.counts["written"],
                time.perf_counter() - started,
            )

    def _load(self, version: str) -> VersionState:
        info = version_info(self.client, version)
        if info is None:
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
        return VersionState(
            version=version,
            loaded=loaded,
            index=IncrementalIndex.from_model(loaded.model),
            rows={text(k): int(v) for k, v in index_raw.items()},
            articles={a.id: a for a in loaded.articles},
            next_row=int(info.get("next_row", len(loaded.articles))),
            applied=info.get("applied", "0-0"),
            start_ms=max(0, iso_ms(as_of) - int(self.replay_margin_s * 1000)) if as_of else 0,
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

    def _check(self, state: VersionState) -> None:
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
            except LockLost:
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
            holder = self.lock.holder() or "?"
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
            write = entry_key(entry.id) > entry_key(state.applied)
            if write:
                self._check(state)
            try:
                result = apply_entry(
                    self.client,
                    self.lock,
                    state,
                    entry,
                    write=write,
                    ack=entry_key(entry.id) > entry_key(self._acked),
                )
            except VersionChanged:
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
                if entry_key(entry.id) > entry_key(self._acked):
                    self._acked = entry.id
                if self.on_result is not None:
                    self.on_result(result)
            else:
                state.counts["replayed"] += 1
        return done
