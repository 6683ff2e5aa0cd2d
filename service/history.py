"""Server-side reading history and trending counts in Redis (no Flask; see service/keys.py).

A reader's history is a capped list, most recent first, that expires ``ttl`` after the last
event. Every event also adds one to the article's count in the bucket of its UTC hour; trending
is the union of the last ``window_hours`` buckets, each weighted ``0.5 ** (age / half_life)``.
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


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """Retention of histories and the trending window."""

    ttl_seconds: int = 30 * 86_400
    max_items: int = 50
    window_hours: int = 24
    half_life_hours: float = 6.0
    cache_seconds: float = 10.0


def call(action: Callable[[], Any]) -> Any:
    """Run a Redis action; connection trouble becomes :class:`StoreUnavailable` (a 503)."""
    try:
        return action()
    except TRANSIENT as exc:
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


def record_event(
    client: redis.Redis,
    article_id: str,
    user_id: str | None,
    now: float,
    settings: HistorySettings,
) -> None:
    """Append ``article_id`` to the user's history (if any) and count it for trending."""
    hour = int(now // 3600)
    bucket = keys.trending_key(hour)
    pipe = client.pipeline(transaction=True)
    if user_id is not None:
        history = keys.user_history_key(user_id)
        # A re-read moves the article to the front instead of listing it twice.
        pipe.lrem(history, 0, article_id)
        pipe.lpush(history, article_id)
        pipe.ltrim(history, 0, settings.max_items - 1)
        pipe.expire(history, settings.ttl_seconds)
    pipe.zincrby(bucket, 1, article_id)
    # A bucket lives as long as the window can still read it.
    pipe.expire(bucket, (settings.window_hours + 1) * 3600)
    call(pipe.execute)


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
