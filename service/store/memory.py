"""Reader events, histories and trending in process memory: embedded mode's twin of
service/redis/events.py, with the same semantics (tests/test_store_contract.py holds both to
them), so the demo's "for you" follows a reader's events with no Redis at all.

Per process: several gunicorn workers in embedded mode each keep their own. Everything is
bounded as in Redis: histories by length and age, each reader's trending record by the window
and ``seen_max``, each hourly bucket by ``bucket_size`` (space-saving), buckets by the window.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from service.store.base import (
    COUNTED,
    NOT_COUNTED,
    TRENDING_LIMIT,
    UNKNOWN_ARTICLE,
    HistorySettings,
    Reader,
)

# Expired readers and buckets are dropped at most this often (seconds of event time): each
# read checks expiry itself, so the sweep only bounds memory, and sweeping on every event
# would cost each event a pass over every reader.
SWEEP_EVERY = 60.0


@dataclass
class _History:
    items: list[str] = field(default_factory=list)
    expires: float = 0.0


class MemoryReaders:
    """Histories, per-reader trending records and hourly buckets, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._histories: dict[str, _History] = {}
        self._seen: dict[tuple[str, str], dict[str, int]] = {}
        self._buckets: dict[int, dict[str, float]] = {}
        self._swept_at = -math.inf

    def record(
        self,
        known: bool,
        article_id: str,
        reader: Reader | None,
        now: float,
        settings: HistorySettings,
    ) -> int:
        """As the Redis event script: check (``known``: the article is in the live version),
        history, count once per reader and window."""
        if not known:
            return UNKNOWN_ARTICLE
        # Whole seconds in the trending window, as the script gets them: a reader is counted
        # again at the same moment in both stores.
        second = int(now)
        with self._lock:
            if reader is not None and reader.kind == "u":
                self._remember(reader.identity, article_id, now, settings)
            if reader is None or reader.weight(settings) <= 0:
                return NOT_COUNTED
            window = settings.window_hours * 3600
            seen = self._seen.setdefault((reader.kind, reader.identity), {})
            for article, first in list(seen.items()):
                if first < second - window:
                    del seen[article]
            if article_id in seen or len(seen) >= settings.seen_max:
                return NOT_COUNTED
            seen[article_id] = second
            self._count(int(now // 3600), article_id, reader.weight(settings), settings)
            if now - self._swept_at >= SWEEP_EVERY:
                self._swept_at = now
                self._forget_old(now, settings)
            return COUNTED

    def _remember(
        self, user_id: str, article_id: str, now: float, settings: HistorySettings
    ) -> None:
        history = self._histories.get(user_id)
        if history is None or history.expires <= now:
            history = self._histories[user_id] = _History()
        if article_id in history.items:
            history.items.remove(article_id)
        history.items.insert(0, article_id)
        del history.items[settings.max_items :]
        history.expires = now + settings.ttl_seconds

    def _count(self, hour: int, article_id: str, weight: float, settings: HistorySettings) -> None:
        bucket = self._buckets.setdefault(hour, {})
        if article_id in bucket or len(bucket) < settings.bucket_size:
            bucket[article_id] = bucket.get(article_id, 0.0) + weight
            return
        # Space-saving, as ZPOPMIN: the least counted (then the smallest id) makes room and
        # the newcomer inherits its count.
        low = min(bucket.items(), key=lambda item: (item[1], item[0]))
        del bucket[low[0]]
        bucket[article_id] = low[1] + weight

    def _forget_old(self, now: float, settings: HistorySettings) -> None:
        oldest = int(now // 3600) - settings.window_hours
        for hour in [h for h in self._buckets if h < oldest]:
            del self._buckets[hour]
        oldest_seen = int(now) - settings.window_hours * 3600
        for key in [k for k, seen in self._seen.items() if max(seen.values()) < oldest_seen]:
            del self._seen[key]
        for user in [u for u, h in self._histories.items() if h.expires <= now]:
            del self._histories[user]

    def history(self, user_id: str, limit: int, now: float) -> list[str]:
        """A reader's history, most recent first (empty when none or expired)."""
        with self._lock:
            history = self._histories.get(user_id)
            if history is None or history.expires <= now or limit <= 0:
                return []
            return history.items[:limit]

    def erase(self, user_id: str) -> None:
        """Forget a reader's history and trending record."""
        with self._lock:
            self._histories.pop(user_id, None)
            self._seen.pop(("u", user_id), None)

    def trending(self, now: float, settings: HistorySettings) -> list[tuple[str, float]]:
        """The heads of the window's buckets, decayed by age and merged (as in Redis)."""
        hour = int(now // 3600)
        totals: dict[str, float] = {}
        with self._lock:
            for age in range(settings.window_hours):
                bucket = self._buckets.get(hour - age)
                if not bucket:
                    continue
                weight = math.pow(0.5, age / settings.half_life_hours)
                # ZRANGE ... REV: by count, then by id, both descending.
                head = sorted(bucket.items(), key=lambda item: (item[1], item[0]), reverse=True)
                for article, count in head[: settings.head]:
                    totals[article] = totals.get(article, 0.0) + weight * count
        pairs = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))
        return pairs[:TRENDING_LIMIT]
