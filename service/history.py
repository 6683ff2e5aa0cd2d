"""Server-side reading history and trending counts in Redis (no Flask; see service/keys.py).

A reader's history is a capped list, most recent first, that expires ``ttl`` after the last
event. An event also adds one to the article's count in the bucket of its UTC hour, unless the
reader's stored history already holds the article (a reader counts once per article, so one
reader reloading a page cannot lift it into everyone's box); anonymous events always count.
Trending is the union of the last ``window_hours`` buckets, each weighted
``0.5 ** (age / half_life)``.
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

# KEYS: history, trending bucket; ARGV: article, max items, history ttl, bucket ttl. One script
# so that "was it already read?" and the count cannot interleave with the reader's next event.
RECORD_READ_LUA = """
local seen = redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if seen == 0 then
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return seen
"""


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """Retention of histories and the trending window."""

    ttl_seconds: int = 30 * 86_400
    max_items: int = 50
    window_hours: int = 24
    half_life_hours: float = 6.0
    cache_seconds: float = 10.0


def call(action: Callable[[], Any], errors: tuple[type[Exception], ...] = TRANSIENT) -> Any:
    """Run a Redis action; connection trouble (or ``errors``) becomes :class:`StoreUnavailable`
    (a 503)."""
    try:
        return action()
    except errors as exc:
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


def record_event(
    client: redis.Redis,
    article_id: str,
    user_id: str | None,
    now: float,
    settings: HistorySettings,
) -> bool:
    """Append ``article_id`` to the user's history (if any) and count it for trending.

    A re-read moves the article to the front of the history instead of listing it twice, and
    does not count for trending again. Returns whether the event counted for trending.
    """
    bucket = keys.trending_key(int(now // 3600))
    # A bucket lives as long as the window can still read it.
    bucket_ttl = (settings.window_hours + 1) * 3600
    if user_id is None:
        pipe = client.pipeline(transaction=True)
        pipe.zincrby(bucket, 1, article_id)
        pipe.expire(bucket, bucket_ttl)
        call(pipe.execute)
        return True
    script = client.register_script(RECORD_READ_LUA)
    keys_ = [keys.user_history_key(user_id), bucket]
    args: list[str | int] = [article_id, settings.max_items, settings.ttl_seconds, bucket_ttl]
    return int(call(lambda: script(keys=keys_, args=args))) == 0


def user_history(client: redis.Redis, user_id: str, limit: int) -> list[str]:
    """A user's stored history, most recent first (empty when unknown or expired)."""
    raw = call(lambda: client.lrange(keys.user_history_key(user_id), 0, limit - 1))
    return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]


def delete_user(client: redis.Redis, user_id: str) -> bool:
    """Erase a user's stored history; whether there was one."""
    return bool(call(lambda: client.delete(keys.user_history_key(user_id))))


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
    """Most viewed article ids in the window with their time-decayed counts, best first (ties
    by id)."""
    raw = call(lambda: client.zunion(trending_weights(now, settings), withscores=True))
    pairs = [(item.decode() if isinstance(item, bytes) else str(item), float(s)) for item, s in raw]
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
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
