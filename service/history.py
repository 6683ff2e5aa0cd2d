"""Server-side reading history and trending counts in Redis (no Flask; see service/keys.py).

Every event is checked and written by one script (:data:`EVENT_LUA`), atomic with the live
version's id index: an id the version does not hold is refused and nothing of it is stored, so
junk ids cannot grow anything.

**Trending counts readers, not requests.** A reader is a signed user (``u``) or, without a
token, a client address (``a``). Each reader counts once per article in the trending window
(its ``rs:seen`` set remembers what it was counted for), with weight 1 for a signed user and
``anonymous_weight`` for an address (one address may be one reader or a whole office; it is
also the identity an abuser controls best). A reader counted for more than ``seen_max``
articles in the window is a crawler, not a reader: its further events count for nothing. So
one client, at any rate, adds at most its weight to an article.

**Trending is bounded by construction.** Each UTC hour has one bucket of at most
``bucket_size`` articles, kept with the space-saving algorithm (Metwally et al., 2005): an
article new to a full bucket replaces the least counted one and inherits its count, so the
heavy hitters of the hour are always in it. A request never unions buckets on the server: the
reader takes the head (``head`` best) of each bucket in the window, one pipeline of bounded
``ZRANGE``s, and merges them in the process, each bucket weighted ``0.5 ** (age / half_life)``.

A reader's history is a capped list, most recent first, that expires ``ttl`` after the last
event.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from service import keys
from service.store.base import StoreUnavailable

TRANSIENT = (redis.ConnectionError, redis.TimeoutError)
# Trending ids kept per computation: enough to fill a box after section and read filters.
TRENDING_LIMIT = 500

# What the event script returns.
UNKNOWN_ARTICLE = -1  # not in the version: nothing stored
NOT_COUNTED = 0  # stored in the history (if any), but the reader was already counted
COUNTED = 1

# KEYS: the version's id index, the reader's seen set, the hour's bucket, the history list (or
# the seen key again when there is none: unused then).
# ARGV: article, now (s), window (s), seen max, weight, bucket size, bucket ttl, history max
# (0: no history), history ttl. One script, so that the id check, "was this reader counted?"
# and the count cannot interleave with another event.
EVENT_LUA = """
local article = ARGV[1]
if redis.call('HEXISTS', KEYS[1], article) == 0 then return -1 end
local history_max = tonumber(ARGV[8])
if history_max > 0 then
  redis.call('LREM', KEYS[4], 0, article)
  redis.call('LPUSH', KEYS[4], article)
  redis.call('LTRIM', KEYS[4], 0, history_max - 1)
  redis.call('EXPIRE', KEYS[4], ARGV[9])
end
local weight = tonumber(ARGV[5])
if weight <= 0 then return 0 end
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - window))
if redis.call('ZSCORE', KEYS[2], article) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], now, article)
redis.call('EXPIRE', KEYS[2], window)
local size = tonumber(ARGV[6])
if redis.call('ZSCORE', KEYS[3], article) or redis.call('ZCARD', KEYS[3]) < size then
  redis.call('ZINCRBY', KEYS[3], weight, article)
else
  local low = redis.call('ZPOPMIN', KEYS[3])
  redis.call('ZADD', KEYS[3], tonumber(low[2]) + weight, article)
end
redis.call('EXPIRE', KEYS[3], ARGV[7])
return 1
"""


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """Retention of histories, the trending window and its bounds."""

    ttl_seconds: int = 30 * 86_400
    max_items: int = 50
    window_hours: int = 24
    half_life_hours: float = 6.0
    cache_seconds: float = 10.0
    bucket_size: int = 2000  # articles kept per hourly bucket
    head: int = TRENDING_LIMIT  # best articles read from each bucket
    seen_max: int = 1000  # articles one reader is counted for in the window
    anonymous_weight: float = 0.5  # a client address's count; a signed user's is 1


@dataclass(frozen=True, slots=True)
class Reader:
    """Who an event is from: ``kind`` ``u`` (a signed user id) or ``a`` (a client address)."""

    kind: str
    identity: str


def call(action: Callable[[], Any], errors: tuple[type[Exception], ...] = TRANSIENT) -> Any:
    """Run a Redis action; connection trouble (or ``errors``) becomes :class:`StoreUnavailable`
    (a 503)."""
    try:
        return action()
    except errors as exc:
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


def record_event(
    client: redis.Redis,
    version: str,
    article_id: str,
    reader: Reader | None,
    now: float,
    settings: HistorySettings,
) -> int:
    """Check ``article_id`` against ``version`` and record the event in one script.

    A signed user's event also goes to the front of their history. Returns
    :data:`UNKNOWN_ARTICLE` (nothing stored), :data:`NOT_COUNTED` or :data:`COUNTED` (for
    trending). An event with no reader at all is checked and counts for nothing.
    """
    weight, history_max = 0.0, 0
    seen = history = keys.index_key(version)  # placeholders: untouched without a reader
    if reader is not None:
        seen = keys.seen_key(reader.kind, reader.identity)
        weight = 1.0 if reader.kind == "u" else settings.anonymous_weight
        if reader.kind == "u":
            history_max = settings.max_items
            history = keys.user_history_key(reader.identity)
    window = settings.window_hours * 3600
    keys_ = [keys.index_key(version), seen, keys.trending_key(int(now // 3600)), history]
    args: list[str | int | float] = [
        article_id,
        int(now),
        window,
        settings.seen_max,
        weight,
        settings.bucket_size,
        # A bucket lives as long as the window can still read it.
        window + 3600,
        history_max,
        settings.ttl_seconds,
    ]
    script = client.register_script(EVENT_LUA)
    return int(call(lambda: script(keys=keys_, args=args)))


def user_history(client: redis.Redis, user_id: str, limit: int) -> list[str]:
    """A user's stored history, most recent first (empty when unknown or expired)."""
    raw = call(lambda: client.lrange(keys.user_history_key(user_id), 0, limit - 1))
    return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]


def delete_user(client: redis.Redis, user_id: str) -> bool:
    """Erase what is stored of a user (history, trending dedupe set); whether there was any."""
    doomed = (keys.user_history_key(user_id), keys.seen_key("u", user_id))
    return bool(call(lambda: client.delete(*doomed)))


def trending_weights(now: float, settings: HistorySettings) -> dict[str, float]:
    """Bucket key -> weight of the buckets in the window (the current hour weighs 1)."""
    hour = int(now // 3600)
    return {
        keys.trending_key(hour - age): math.pow(0.5, age / settings.half_life_hours)
        for age in range(settings.window_hours)
    }


def compute_trending(
    client: redis.Redis, now: float, settings: HistorySettings
) -> list[tuple[str, float]]:
    """Most read article ids in the window with their time-decayed counts, best first (ties
    by id): the heads of the hourly buckets, read in one pipeline and merged here."""
    weights = trending_weights(now, settings)
    pipe = client.pipeline(transaction=False)
    for bucket in weights:
        pipe.zrange(bucket, 0, settings.head - 1, desc=True, withscores=True)
    heads = call(pipe.execute)
    totals: dict[str, float] = {}
    for weight, head in zip(weights.values(), heads, strict=True):
        for item, score in head:
            article = item.decode() if isinstance(item, bytes) else str(item)
            totals[article] = totals.get(article, 0.0) + weight * float(score)
    pairs = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))
    return pairs[:TRENDING_LIMIT]


class TrendingCache:
    """Trending (id, count) pairs, recomputed at most every ``settings.cache_seconds`` per
    process: the fallback reads the ids, the popularity prior the counts too."""

    def __init__(
        self, settings: HistorySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._value: list[tuple[str, float]] = []
        self._expires = -math.inf

    def get(self, client: redis.Redis, now: float) -> list[tuple[str, float]]:
        """The cached list, or a fresh one when it is older than the cache time."""
        moment = self._clock()
        if moment < self._expires:
            return self._value
        value = compute_trending(client, now, self.settings)
        with self._lock:
            self._value, self._expires = value, moment + self.settings.cache_seconds
        return value
