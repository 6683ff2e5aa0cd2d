"""The Redis store: the API's read side of what ``recs publish`` wrote (see service/redis/keys.py).

Each read is one round trip: small Lua scripts follow id -> row -> keys on the server. They
build key names from prefixes passed in ARGV, which is fine on a single Redis (or a replica)
but not on Redis Cluster, where a version's keys would have to share a hash tag.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import redis

from service.redis import events, keys, queue, scripts
from service.redis.breaker import CircuitBreaker
from service.redis.budgets import DEFAULT_TIMEOUTS, KindClients
from service.redis.client import ANY_ERROR, TRANSIENT, call, connect, text
from service.redis.codec import decode_meta, meta_id
from service.redis.meta_cache import MetaCache
from service.redis.rows import RedisSource, RowCaches, latest_ids
from service.redis.rules import RedisRules
from service.store.base import (
    ArticleMeta,
    HistorySettings,
    LazyMetas,
    Neighbour,
    Reader,
    RelatedRead,
    RuleChange,
    RuleSet,
    RulesReplaced,
    Store,
    StoreUnavailable,
    VersionInfo,
)
from service.store.rules_cache import DEFAULT_RULES_TTL, RulesCache
from service.store.trending import TrendingCache

T = TypeVar("T")

DEFAULT_TIMEOUT = 0.5
# Decoded article metadata kept per process (see MetaCache); about 1 KB of Python objects each.
DEFAULT_META_CACHE_SIZE = 32_768
# Rows ("for you": id -> row, neighbour list, metadata) kept per process; ~1.1 KB each.
DEFAULT_ROW_CACHE_SIZE = 32_768
# Lua's unpack() has a stack limit near 8000 values; stay well below it.
MAX_IDS_PER_CALL = 1000


# Every uint16 score as keys.decode_neighbours computes it (float32 division), so both reads
# give identical floats.
_SCORES: list[float] = (
    np.arange(keys.SCORE_SCALE + 1, dtype=np.float32) / keys.SCORE_SCALE
).tolist()


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
        row_cache_size: int = DEFAULT_ROW_CACHE_SIZE,
        budgets: Mapping[str, float] | None = None,
        breaker_cooldown: float = 1.0,
        rules_ttl: float = DEFAULT_RULES_TTL,
    ) -> None:
        if isinstance(target, str):
            # Every command goes through the circuit breaker: during an outage only the first
            # call per cool-down waits for the timeout (see service/redis/breaker.py).
            self.client: redis.Redis = connect(
                target,
                timeout=timeout,
                connect_timeout=connect_timeout,
                # One immediate retry heals a pooled connection the server dropped; more would
                # only delay the 503 a client is waiting for.
                retries=1,
                max_connections=max_connections,
                breaker=breaker or CircuitBreaker(),
            )
            self._owned = True
        else:
            self.client = target
            self._owned = False
        self._current = self.client.register_script(scripts.CURRENT_LUA)
        self._neighbours = self.client.register_script(scripts.NEIGHBOURS_LUA)
        self._articles = self.client.register_script(scripts.ARTICLES_LUA)
        self._related = self.client.register_script(scripts.RELATED_LUA)
        self._row_list = self.client.register_script(scripts.ROW_LIST_LUA)
        self.meta_cache = MetaCache(meta_cache_size) if meta_cache_size > 0 else None
        # "For you" reads and event writes: a pool, a timeout and a breaker per kind.
        self.kinds = KindClients(self.client, budgets or DEFAULT_TIMEOUTS, breaker_cooldown)
        self.rows = RowCaches(row_cache_size)
        self._trending = TrendingCache()
        self._rules = RedisRules(self.client)
        self._rules_cache = RulesCache(
            lambda: call(self._rules.seq, ANY_ERROR),
            self._read_rules,
            rules_ttl,
            keep_on=(StoreUnavailable,),
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store on its own connection pool to ``url``."""
        return cls(url, **options)

    def _call(self, action: Callable[[], T]) -> T:
        return call(action)

    def current_version(self) -> VersionInfo | None:
        """The live version and its info, read in one round trip."""
        reply = self._call(
            lambda: self._current(keys=[keys.CURRENT], args=[keys.VERSION_ROOT, keys.INFO_SUFFIX])
        )
        if not reply:
            return None
        version, flat = text(reply[0]), reply[1]
        info = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
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
            Neighbour(id=text(nid), score=float(score))
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
            neighbour_id = meta_id(meta) if meta else None
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

    def latest(self, version: str, section: str | None, limit: int) -> list[str]:
        """From the version's "latest" sorted sets (written at publish time)."""
        if limit <= 0:
            return []  # ZREVRANGE 0 -1 would be the whole set
        return latest_ids(self.client, version, section, limit)

    def ranking_source(self, info: VersionInfo) -> RedisSource:
        """Rows in batched round trips, through the process's row cache of ``info``."""
        return RedisSource(self.client, info, self.rows.get(info))

    def record_event(
        self,
        version: str,
        article_id: str,
        reader: Reader | None,
        now: float,
        settings: HistorySettings,
    ) -> int:
        """One script, atomic with the version's id index (service/redis/events.py)."""
        return events.record_event(self.kinds["events"], version, article_id, reader, now, settings)

    def reader_history(
        self, user_id: str, limit: int, now: float, settings: HistorySettings
    ) -> list[str]:
        """The reader's capped list."""
        if limit <= 0:
            return []  # LRANGE 0 -1 would be the whole list
        return events.user_history(self.kinds["history"], user_id, limit)

    def erase_reader(self, user_id: str) -> None:
        """Delete the history list and the trending record."""
        events.delete_user(self.kinds["history"], user_id)

    def trending(self, now: float, settings: HistorySettings) -> list[tuple[str, float]]:
        """Bounded bucket heads merged here, cached ``settings.cache_seconds`` per process."""
        client = self.kinds["trending"]
        return self._trending.get(settings, lambda: events.compute_trending(client, now, settings))

    def enqueue_update(self, op: str, article_id: str, article: Any, *, by: str) -> str:
        """Append to the update stream (any Redis error: the server's trouble, a 503)."""
        if op == "upsert":
            return call(lambda: queue.enqueue_upsert(self.client, article, by=by), ANY_ERROR)
        return call(lambda: queue.enqueue_delete(self.client, article_id, by=by), ANY_ERROR)

    def writer_running(self) -> bool:
        """Whether a writer holds the update lock."""
        return call(lambda: queue.writer_active(self.client), ANY_ERROR)

    def update_result(self, entry: str, timeout: float) -> Mapping[str, Any] | None:
        """The writer's ack of ``entry`` within ``timeout`` (``None``: not yet)."""
        if timeout <= 0:
            return None
        return call(lambda: queue.wait_applied(self.client, entry, timeout), ANY_ERROR)

    def drift(self, version: str, threshold: float) -> dict[str, Any] | None:
        """From the version's info hash (updates applied since the build)."""
        info: Any = call(lambda: self.client.hgetall(keys.info_key(version)), ANY_ERROR)
        return queue.drift(info, threshold) if info else None

    # ------------------------------------------------------------------------- rules
    def _read_rules(self) -> tuple[int, RuleSet]:
        found = self.stored_rules()
        return found.seq, found

    def rules(self) -> RuleSet:
        """The rule set, re-read only when ``rs:rules:seq`` moved (checked once per ttl); the
        last set read while Redis fails (service/store/rules_cache.py)."""
        return self._rules_cache.get()

    def stored_rules(self) -> RuleSet:
        """Every rule and the counter, from Redis now."""
        return call(self._rules.read, ANY_ERROR)

    def put_rule(self, rule: Mapping[str, Any]) -> RuleChange:
        """One script: the rule, the counter and the log entry."""
        return call(lambda: self._rules.put(rule), ANY_ERROR)

    def delete_rule(self, rule_id: str, *, by: str, at: str) -> RuleChange | None:
        """One script: the rule, the counter and the log entry (``None``: no such rule)."""
        return call(lambda: self._rules.delete(rule_id, by=by, at=at), ANY_ERROR)

    def replace_rules(
        self, rules: Mapping[str, Mapping[str, Any]], *, by: str, at: str
    ) -> RulesReplaced:
        """One MULTI/EXEC (service/redis/rules.py)."""
        return call(lambda: self._rules.replace(rules, by=by, at=at), ANY_ERROR)

    def rule_history(self, rule_id: str | None, limit: int) -> list[dict[str, Any]]:
        """From the capped log stream, newest first."""
        if limit <= 0:
            return []
        return call(lambda: self._rules.history(rule_id, limit), ANY_ERROR)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """The related reads' breaker and one per kind of "for you" work."""
        main = getattr(self.client, "breaker", None)
        found = {"related": main} if isinstance(main, CircuitBreaker) else {}
        return {**found, **self.kinds.breakers()}

    def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(self.client.ping())
        except TRANSIENT:
            return False

    def close(self) -> None:
        """Close the connection pool if this store created it."""
        self.kinds.close()
        if self._owned:
            self.client.close()
