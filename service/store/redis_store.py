"""The Redis store: the API's read side of what ``recs publish`` wrote (see service/keys.py).

Each read is one round trip: small Lua scripts follow id -> row -> keys on the server. They
build key names from prefixes passed in ARGV, which is fine on a single Redis (or a replica)
but not on Redis Cluster, where a version's keys would have to share a hash tag.
"""

from __future__ import annotations

import json
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service import keys
from service.breaker import CircuitBreaker, GuardedRedis
from service.store.base import (
    ArticleMeta,
    LazyMetas,
    Neighbour,
    RelatedRead,
    Store,
    StoreUnavailable,
    VersionInfo,
)

T = TypeVar("T")

DEFAULT_TIMEOUT = 0.5
# Decoded article metadata kept per process (see MetaCache); about 1 KB of Python objects each.
DEFAULT_META_CACHE_SIZE = 32_768
# Lua's unpack() has a stack limit near 8000 values; stay well below it.
MAX_IDS_PER_CALL = 1000

_CURRENT_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('HGETALL', ARGV[1] .. v .. ARGV[2])}
"""

# Returns false for an unknown id, else {blob, id_1, ..., id_n} with '' for a neighbour row
# whose metadata is missing (never expected in a complete version).
_NEIGHBOURS_LUA = """
local row = redis.call('HGET', KEYS[1], ARGV[3])
if not row then return false end
local blob = redis.call('GET', ARGV[1] .. row)
if not blob then return false end
local n = math.floor(#blob / 6)
local out = {blob}
if n == 0 then return out end
local mkeys = {}
for i = 1, n do
  mkeys[i] = ARGV[2] .. string.format('%d', struct.unpack('<i4', blob, (i - 1) * 4 + 1))
end
local metas = redis.call('MGET', unpack(mkeys))
for i = 1, n do
  local id = ''
  if metas[i] then id = string.match(metas[i], '^%["([^"]*)"') or '' end
  out[i + 1] = id
end
return out
"""

# The read behind /related: id -> row -> neighbour list -> the source's and the first
# ARGV[4] (-1: all) neighbours' metadata, all raw. It only follows keys and never parses
# metadata: Lua string work per neighbour (matching out ids, as _NEIGHBOURS_LUA does) costs
# more Redis time than the MGET itself, and the API decodes just the few metas it shows.
# Returns false for an unknown id, else {blob, source meta, meta_1, ..., meta_m} with a nil
# for missing metadata.
_RELATED_LUA = """
local row = redis.call('HGET', KEYS[1], ARGV[3])
if not row then return false end
local blob = redis.call('GET', ARGV[1] .. row)
if not blob then return false end
local n = math.floor(#blob / 6)
local limit = tonumber(ARGV[4])
if limit < 0 or limit > n then limit = n end
local mkeys = {ARGV[2] .. row}
for i = 1, limit do
  mkeys[i + 1] = ARGV[2] .. string.format('%d', struct.unpack('<i4', blob, (i - 1) * 4 + 1))
end
local out = redis.call('MGET', unpack(mkeys))
table.insert(out, 1, blob)
return out
"""

# The read behind /related when the metadata is cached in the process: id -> row -> list.
# Returns false for an unknown id, else {row, blob}.
_ROW_LIST_LUA = """
local row = redis.call('HGET', KEYS[1], ARGV[2])
if not row then return false end
local blob = redis.call('GET', ARGV[1] .. row)
if not blob then return false end
return {row, blob}
"""

# Returns one metadata blob per id, '' for an unknown id.
_ARTICLES_LUA = """
local n = #ARGV - 1
local out = {}
if n == 0 then return out end
local rows = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
local mkeys, pos = {}, {}
for i = 1, n do
  out[i] = ''
  if rows[i] then
    mkeys[#mkeys + 1] = ARGV[1] .. rows[i]
    pos[#pos + 1] = i
  end
end
if #mkeys > 0 then
  local metas = redis.call('MGET', unpack(mkeys))
  for j = 1, #mkeys do
    if metas[j] then out[pos[j]] = metas[j] end
  end
end
return out
"""


# Every uint16 score as keys.decode_neighbours computes it (float32 division), so both reads
# give identical floats.
_SCORES: list[float] = (
    np.arange(keys.SCORE_SCALE + 1, dtype=np.float32) / keys.SCORE_SCALE
).tolist()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# /related spends most of its time moving and decoding the k + 1 metadata blobs it shows, and
# the same few thousand articles are shown over and over (every neighbour list of a corpus
# draws on it). A version's metadata changes only with its update seq (an incremental edit
# rewrites a row's blob and bumps the seq), so decoded metadata is kept per row for the
# (version, seq) last seen by current_version() and dropped whole when either changes; the
# API sees that pair at most VERSION_TTL late, the same bound as for the lists themselves.
class MetaCache:
    """Bounded LRUs of decoded metadata by row and of rows by article id, for one (version, seq).

    Knowing an article's row turns the list read into one plain GET instead of a script: a
    script call costs Redis several times a GET, and /related makes one per request.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[int, ArticleMeta] = OrderedDict()
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._scope: tuple[str, int] | None = None
        self._lock = threading.Lock()  # threaded gunicorn workers share one store

    def use(self, version: str, seq: int) -> None:
        """Make ``(version, seq)`` current, dropping everything cached for another one.

        A lower seq of the current version is ignored: two requests can read the live version
        around an update and report in either order, and going back would let a reader that
        fetched pre-update metadata store it into the scope it belongs to again.
        """
        with self._lock:
            scope = self._scope
            if scope is not None and scope[0] == version and seq < scope[1]:
                return
            if scope != (version, seq):
                self._rows.clear()
                self._ids.clear()
                self._scope = (version, seq)

    def row_of(self, article_id: str) -> int | None:
        """The cached row of an article (``None``: not cached)."""
        with self._lock:
            row = self._ids.get(article_id)
            if row is not None:
                self._ids.move_to_end(article_id)
            return row

    def remember_row(self, scope: tuple[str, int], article_id: str, row: int | None) -> None:
        """Remember (or, with ``None``, forget) an article's row read under ``scope``."""
        with self._lock:
            if row is None:
                self._ids.pop(article_id, None)
                return
            if self._scope != scope:
                return
            self._ids[article_id] = row
            self._ids.move_to_end(article_id)
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)

    @property
    def scope(self) -> tuple[str, int] | None:
        """The (version, seq) cached rows belong to."""
        return self._scope

    def get(self, rows: Sequence[int]) -> list[ArticleMeta | None]:
        """Cached metadata of each row (``None``: not cached)."""
        with self._lock:
            found = [self._rows.get(row) for row in rows]
            for row, meta in zip(rows, found, strict=True):
                if meta is not None:
                    self._rows.move_to_end(row)
            return found

    def put(self, scope: tuple[str, int], items: Sequence[tuple[int, ArticleMeta]]) -> None:
        """Remember rows read under ``scope`` (ignored if the scope moved on meanwhile).

        A reader that looked rows up before an update and fetched them after it would
        otherwise keep pre-update metadata for the whole next scope.
        """
        with self._lock:
            if self._scope != scope:
                return
            for row, meta in items:
                self._rows[row] = meta
                self._rows.move_to_end(row)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)


class RedisStore(Store):
    """Reads published versions from Redis; connection trouble raises StoreUnavailable."""

    def __init__(
        self,
        target: str | redis.Redis,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        max_connections: int | None = None,
        breaker: CircuitBreaker | None = None,
        meta_cache_size: int = DEFAULT_META_CACHE_SIZE,
    ) -> None:
        if isinstance(target, str):
            # Every command goes through the circuit breaker: during an outage only the first
            # call per cool-down waits for the timeout (see service/breaker.py).
            self.client: redis.Redis = GuardedRedis.from_url(
                target,
                breaker=breaker,
                socket_timeout=timeout,
                socket_connect_timeout=timeout if connect_timeout is None else connect_timeout,
                # One immediate retry heals a pooled connection the server dropped; more would
                # only delay the 503 a client is waiting for.
                retry=Retry(NoBackoff(), 1),
                max_connections=max_connections,
                decode_responses=False,
            )
            self._owned = True
        else:
            self.client = target
            self._owned = False
        self._current = self.client.register_script(_CURRENT_LUA)
        self._neighbours = self.client.register_script(_NEIGHBOURS_LUA)
        self._articles = self.client.register_script(_ARTICLES_LUA)
        self._related = self.client.register_script(_RELATED_LUA)
        self._row_list = self.client.register_script(_ROW_LIST_LUA)
        self.meta_cache = MetaCache(meta_cache_size) if meta_cache_size > 0 else None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store on its own connection pool to ``url``."""
        return cls(url, **options)

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc

    def current_version(self) -> VersionInfo | None:
        """The live version and its info, read in one round trip."""
        reply = self._call(
            lambda: self._current(keys=[keys.CURRENT], args=[keys.VERSION_ROOT, keys.INFO_SUFFIX])
        )
        if not reply:
            return None
        version, flat = _text(reply[0]), reply[1]
        info = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        result = VersionInfo(
            version=version,
            built_at=info.get("built_at", ""),
            published_at=info.get("published_at") or None,
            articles=int(info.get("articles", 0)),
            k=int(info.get("k", 0)),
            seq=int(info.get("seq", 0)),
        )
        if self.meta_cache is not None:
            self.meta_cache.use(result.version, result.seq)
        return result

    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        """Stored neighbours of an article, best first, in one round trip; None if unknown."""
        reply = self._call(
            lambda: self._neighbours(
                keys=[keys.index_key(version)],
                args=[keys.neighbours_prefix(version), keys.meta_prefix(version), article_id],
            )
        )
        if not reply:
            return None
        _, scores = keys.decode_neighbours(reply[0])
        return [
            Neighbour(id=_text(nid), score=float(score))
            for nid, score in zip(reply[1:], scores.tolist(), strict=True)
            if nid
        ]

    def articles(self, version: str, ids: Sequence[str]) -> list[ArticleMeta | None]:
        """Metadata of several articles, in order (None for unknown ids)."""
        out: list[ArticleMeta | None] = []
        index, prefix = keys.index_key(version), keys.meta_prefix(version)
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            chunk = list(ids[start : start + MAX_IDS_PER_CALL])
            blobs = self._call(lambda c=chunk: self._articles(keys=[index], args=[prefix, *c]))  # type: ignore[misc]
            out.extend(decode_meta(blob) if blob else None for blob in blobs)
        return out

    def related_articles(
        self, version: str, article_id: str, limit: int | None = None
    ) -> RelatedRead | None:
        """Source and neighbour metadata in one round trip; metas are decoded when read.

        With the metadata cache serving ``version``, the round trip reads only the list, and a
        second one fetches the metadata of rows not cached yet (none, once warm).
        """
        cache = self.meta_cache
        scope = None if cache is None else cache.scope
        if cache is not None and scope is not None and scope[0] == version:
            return self._related_cached(cache, scope, article_id, limit)
        reply = self._call(
            lambda: self._related(
                keys=[keys.index_key(version)],
                args=[
                    keys.neighbours_prefix(version),
                    keys.meta_prefix(version),
                    article_id,
                    -1 if limit is None else limit,
                ],
            )
        )
        if not reply:
            return None
        blob, source, blobs = reply[0], reply[1], reply[2:]
        total = len(blob) // keys.BYTES_PER_NEIGHBOUR
        # The same float32 arithmetic as keys.decode_neighbours, so scores match neighbours().
        scores = (
            np.frombuffer(
                blob,
                dtype=keys.SCORE_DTYPE,
                count=len(blobs),
                offset=total * keys.ROW_DTYPE.itemsize,
            ).astype(np.float32)
            / keys.SCORE_SCALE
        ).tolist()
        neighbours: list[Neighbour] = []
        raw: list[bytes] = []
        for meta, score in zip(blobs, scores, strict=True):
            neighbour_id = _meta_id(meta) if meta else None
            # A row without metadata cannot be named: left out, as neighbours() does.
            if neighbour_id:
                neighbours.append(Neighbour(neighbour_id, score))
                raw.append(meta)
        return RelatedRead(
            decode_meta(source) if source else None,
            neighbours,
            LazyMetas(raw, decode_meta),
            len(blobs) == total,
        )

    def _related_cached(
        self, cache: MetaCache, scope: tuple[str, int], article_id: str, limit: int | None
    ) -> RelatedRead | None:
        version = scope[0]
        prefix = keys.neighbours_prefix(version)
        source_row = cache.row_of(article_id)
        blob: bytes | None = None
        if source_row is not None:
            # Rows are never reused, and a deleted article's list is deleted with it: a miss
            # here means "gone", confirmed through the index below.
            blob = self._call(lambda: self.client.get(f"{prefix}{source_row}"))  # type: ignore[assignment]
        if blob is None:
            reply = self._call(
                lambda: self._row_list(keys=[keys.index_key(version)], args=[prefix, article_id])
            )
            if not reply:
                cache.remember_row(scope, article_id, None)
                return None
            source_row, blob = int(reply[0]), reply[1]
            cache.remember_row(scope, article_id, source_row)
        total = len(blob) // keys.BYTES_PER_NEIGHBOUR
        count = total if limit is None else max(0, min(limit, total))
        # struct and a lookup table: numpy's per-call overhead is most of the cost for ~7 items.
        rows = list(struct.unpack_from(f"<{count}i", blob))
        quantised = struct.unpack_from(f"<{count}H", blob, total * keys.ROW_DTYPE.itemsize)
        scores = [_SCORES[q] for q in quantised]
        wanted = [source_row, *rows]
        metas = cache.get(wanted)
        missing = sorted({row for row, meta in zip(wanted, metas, strict=True) if meta is None})
        if missing:
            meta_prefix = keys.meta_prefix(version)
            blobs: list[bytes | None] = self._call(
                lambda: self.client.mget([f"{meta_prefix}{row}" for row in missing])  # type: ignore[arg-type,return-value]
            )
            # A row without metadata (deleted since the list was read) stays None: left out.
            fetched = {row: decode_meta(b) for row, b in zip(missing, blobs, strict=True) if b}
            cache.put(scope, list(fetched.items()))
            metas = [
                meta if meta is not None else fetched.get(row)
                for row, meta in zip(wanted, metas, strict=True)
            ]
        neighbours: list[Neighbour] = []
        shown: list[ArticleMeta | None] = []
        for meta, score in zip(metas[1:], scores, strict=True):
            if meta is not None:
                neighbours.append(Neighbour(meta.id, score))
                shown.append(meta)
        return RelatedRead(metas[0], neighbours, shown, count == total)

    def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def close(self) -> None:
        """Close the connection pool if this store created it."""
        if self._owned:
            self.client.close()


def _meta_id(blob: bytes) -> str | None:
    """The id in a metadata blob without decoding it (``None`` if it is not there)."""
    # The id is the array's first string and never escaped (see keys.META_FIELDS).
    if not blob.startswith(b'["'):
        return None
    end = blob.find(b'"', 2)
    return blob[2:end].decode() if end > 2 else None


# A decoder of str: json.loads(bytes) first sniffs the encoding on every call.
_decode_json = json.JSONDecoder().decode


def decode_meta(blob: bytes) -> ArticleMeta:
    """A stored metadata blob as an :class:`ArticleMeta`."""
    # Unpacked by position (keys.META_FIELDS order): about three times cheaper than
    # keys.decode_meta's dict, and a cold request decodes some forty of them.
    article_id, title, url, section, published_at, image_url, tags, tag_keys = _decode_json(
        blob.decode()
    )
    return ArticleMeta(
        article_id, title, url, section, published_at, image_url, tuple(tags), tuple(tag_keys)
    )
