"""Where "Recommended for you" reads its data: Redis in batched round trips, or any Store.

The Redis source keys candidates by row number, so a whole history's neighbour lists come back
in one round trip without resolving each neighbour's id; ids are read only for the candidates
described (their metadata blobs start with the id), and decoded only when ranking asks.

A :class:`RowCache` keeps what was read (id -> row, raw neighbour lists, metadata) for one
(version, seq): a version's rows change only through incremental updates, each of which bumps
``seq``, so a new seq simply starts a new cache. Every request also reads through a private map of
its own, so it never depends on what the bounded cache still holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any, Generic, TypeVar

import numpy as np
import redis

from models.ranking import HistoryLists, Lists
from service.redis import keys, scripts
from service.redis.client import call, text
from service.redis.codec import decode_meta
from service.store.base import ArticleMeta, LazyMetas, VersionInfo

KT = TypeVar("KT")
VT = TypeVar("VT")


ROW_BYTES = keys.ROW_DTYPE.itemsize
PAIR_BYTES = keys.BYTES_PER_NEIGHBOUR


def _scores(raw: bytes) -> np.ndarray:
    """Stored uint16 scores as float64, through the float32 arithmetic of
    keys.decode_neighbours, so every source ranks with the very same numbers."""
    quantised = np.frombuffer(raw, dtype=keys.SCORE_DTYPE)
    scaled: np.ndarray = (quantised.astype(np.float32) / keys.SCORE_SCALE).astype(np.float64)
    return scaled


def concatenate(blobs: Sequence[bytes]) -> Lists:
    """Packed neighbour blobs as one :class:`Lists`: two numpy calls for all of them."""
    counts = [len(blob) // PAIR_BYTES for blob in blobs]
    rows = b"".join(blob[: ROW_BYTES * n] for blob, n in zip(blobs, counts, strict=True))
    scores = b"".join(
        blob[ROW_BYTES * n : PAIR_BYTES * n] for blob, n in zip(blobs, counts, strict=True)
    )
    return Lists(counts, np.frombuffer(rows, dtype=keys.ROW_DTYPE), _scores(scores))


class Bounded(Generic[KT, VT]):
    """A dict that forgets its oldest insertions beyond ``capacity`` (FIFO, not LRU: a hit
    costs one dict lookup and no bookkeeping; a hot entry that falls out comes straight back).
    Reads take no lock (a dict lookup is atomic); writes do, for threaded workers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: dict[KT, VT] = {}  # read it directly; write through put() and replace()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def replace(self, key: KT, value: VT) -> None:
        """Overwrite an entry in place (a decoded value for a raw one): no growth, no lock."""
        if key in self.data:
            self.data[key] = value

    def put(self, items: Iterable[tuple[KT, VT]]) -> None:
        """Remember entries, then drop the oldest beyond the capacity."""
        with self._lock:
            data = self.data
            data.update(items)
            excess = len(data) - self.capacity
            if excess > 0:
                for key in list(islice(data, excess)):
                    del data[key]


class RowCache:
    """What ranking read of one (version, seq), shared by a process's requests: id -> row (-1:
    unknown, so junk ids are bounded by the capacity too), row -> raw neighbour list, row ->
    metadata (raw, replaced by its decoded form on first use). Each map keeps ``capacity``."""

    def __init__(self, version: str, seq: int, capacity: int) -> None:
        self.scope = (version, seq)
        self.rows: Bounded[str, int] = Bounded(capacity)
        self.lists: Bounded[int, bytes] = Bounded(capacity)
        self.metas: Bounded[int, bytes | ArticleMeta] = Bounded(capacity)


class RowCaches:
    """The process's :class:`RowCache` of the live (version, seq); ``capacity`` 0 turns it off."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._current: RowCache | None = None
        self._lock = threading.Lock()

    def get(self, info: VersionInfo) -> RowCache | None:
        """The cache of ``info``'s (version, seq) (``None`` when caching is off)."""
        if self.capacity <= 0:
            return None
        current = self._current
        if current is not None and current.scope == (info.version, info.seq):
            return current
        with self._lock:
            # A request still on the previous seq may swap the old scope back in: harmless, a
            # cache only ever holds what was read under its own scope or later.
            if self._current is None or self._current.scope != (info.version, info.seq):
                self._current = RowCache(info.version, info.seq, self.capacity)
            return self._current


def _pull(local: dict[KT, VT], shared: Bounded[KT, VT] | None, wanted: Iterable[KT]) -> list[KT]:
    """Copy ``wanted`` keys from the shared cache into the request's own map (so an eviction by
    another request cannot take them away mid-request); return those in neither, in order."""
    missing = []
    data = shared.data if shared is not None else {}
    for key in wanted:
        if key not in local:
            value = data.get(key)
            if value is None:
                missing.append(key)
            else:
                local[key] = value
    return missing


def _store(local: dict[KT, VT], shared: Bounded[KT, VT] | None, items: list[tuple[KT, VT]]) -> None:
    local.update(items)
    if shared is not None:
        shared.put(items)


class RedisSource:
    """A ranking source over one published version in Redis, keyed by row number.

    One source serves one request. Reads go through its own maps, then the process's
    :class:`RowCache` (if any), then Redis for whatever is still missing, batched.
    """

    def __init__(
        self, client: redis.Redis, info: VersionInfo, cache: RowCache | None = None
    ) -> None:
        self.client = client
        self.version = info.version
        self.shared = cache
        # The shared maps, or None when the process cache is off.
        self._shared_rows = cache.rows if cache is not None else None
        self._shared_lists = cache.lists if cache is not None else None
        self._shared_metas = cache.metas if cache is not None else None
        self._history = client.register_script(scripts.HISTORY_LUA)
        # Built once: a key per candidate would otherwise re-validate the version each time.
        self._index = keys.index_key(info.version)
        self._neighbours_prefix = keys.neighbours_prefix(info.version)
        self._meta_prefix = keys.meta_prefix(info.version)
        self._rows: dict[str, int] = {}
        self._lists: dict[int, bytes] = {}
        self._metas: dict[int, bytes | ArticleMeta] = {}  # b"": no metadata stored
        self.round_trips = 0  # Redis reads made (0 when the cache had everything)

    def meta(self, row: int) -> ArticleMeta | None:
        """The metadata of a row already described, decoded once."""
        value = self._metas[row]
        if isinstance(value, bytes):
            if not value:
                return None
            value = self._metas[row] = decode_meta(value)
            if self._shared_metas is not None:
                self._shared_metas.replace(row, value)
        return value

    def history_lists(self, ids: Sequence[str], extra: Sequence[str] = ()) -> HistoryLists:
        """Rows and neighbour lists of ``ids`` and rows of ``extra``; what the caches lack in one
        round trip (a Lua script following id -> row -> list on the server)."""
        wanted = list(dict.fromkeys([*ids, *extra]))
        missing = _pull(self._rows, self._shared_rows, wanted)
        # Only the history's lists are needed (of the extra ids, just their rows).
        known = [row for i in ids if (row := self._rows.get(i, -1)) >= 0]
        lacking = set(_pull(self._lists, self._shared_lists, known))
        if lacking:  # a row without its list: read again with the rest
            missing += [i for i in dict.fromkeys(ids) if self._rows.get(i, -1) in lacking]
        if missing:
            args = [self._neighbours_prefix, *missing]
            self.round_trips += 1
            reply = call(lambda: self._history(keys=[self._index], args=args))
            rows = [int(reply[2 * i]) if reply[2 * i] else -1 for i in range(len(missing))]
            blobs = [(row, reply[2 * i + 1] or b"") for i, row in enumerate(rows) if row >= 0]
            _store(self._lists, self._shared_lists, blobs)
            _store(self._rows, self._shared_rows, list(zip(missing, rows, strict=True)))
        found = [self._rows[article_id] for article_id in ids]
        lists = concatenate([self._lists[row] for row in found if row >= 0])
        lengths = iter(lists.counts)
        return HistoryLists(
            keys=[row if row >= 0 else None for row in found],
            counts=[next(lengths) if row >= 0 else 0 for row in found],
            neighbours=lists.neighbours,
            scores=lists.scores,
            extra=[row if (row := self._rows[i]) >= 0 else None for i in extra],
        )

    def _fetch(self, metas: Sequence[int], lists: Sequence[int]) -> None:
        """Read the metadata of ``metas`` and the lists of ``lists`` in one MGET."""
        names = [f"{self._meta_prefix}{row}" for row in metas]
        names += [f"{self._neighbours_prefix}{row}" for row in lists]
        if not names:
            return
        self.round_trips += 1
        blobs: Any = call(lambda: self.client.mget(names))
        n = len(metas)
        read = list(zip(metas, blobs[:n], strict=True))
        # A missing meta (never in a complete version) is remembered by this request only.
        self._metas.update((row, blob or b"") for row, blob in read)
        if self._shared_metas is not None:
            self._shared_metas.put([(row, blob) for row, blob in read if blob])
        found = [(row, blob or b"") for row, blob in zip(lists, blobs[n:], strict=True)]
        _store(self._lists, self._shared_lists, found)

    def describe(self, keys_: Sequence[int]) -> Sequence[ArticleMeta | None]:
        """Metadata of rows, with their neighbour lists (the MMR's next read) in the same MGET.

        Decoded only when indexed: ranking reads every candidate's, but of the history items
        only those that explain a chosen item.
        """
        self._fetch(
            _pull(self._metas, self._shared_metas, keys_),
            _pull(self._lists, self._shared_lists, keys_),
        )
        # Decoded on first access (and kept decoded, in the shared cache too).
        return LazyMetas(keys_, self.meta)

    def sections(self, keys_: Sequence[int]) -> list[str | None]:
        """Sections of rows (the section-affinity prior's input): metadata only, through the
        caches; what they lack in one MGET (the first describe then finds it read)."""
        self._fetch(_pull(self._metas, self._shared_metas, keys_), [])
        return [None if (meta := self.meta(row)) is None else meta.section for row in keys_]

    def neighbour_lists(self, keys_: Sequence[int]) -> Lists:
        """Neighbour lists of rows: cached (usually read with the metadata), else one MGET."""
        self._fetch([], _pull(self._lists, self._shared_lists, keys_))
        return concatenate([self._lists[row] for row in keys_])


def latest_ids(client: redis.Redis, version: str, section: str | None, limit: int) -> list[str]:
    """Ids of the newest articles of a version (optionally of one section), newest first."""
    key = keys.latest_section_key(version, section) if section else keys.latest_key(version)
    return [text(item) for item in call(lambda: client.zrevrange(key, 0, limit - 1))]
