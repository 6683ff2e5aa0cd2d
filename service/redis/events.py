"""Server-side reading history and trending counts in Redis (no Flask; see service/redis/keys.py).

Every event is checked and written by one script (:data:`scripts.EVENT_LUA`), atomic with the
live version's id index: an id the version does not hold is refused and nothing of it is
stored, so junk ids cannot grow anything.

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

import redis

from service.redis import keys, scripts
from service.redis.client import call, text
from service.store.base import (
    TRENDING_LIMIT,
    HistorySettings,
    Reader,
)


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
        weight = reader.weight(settings)
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
    script = client.register_script(scripts.EVENT_LUA)
    return int(call(lambda: script(keys=keys_, args=args)))


def user_history(client: redis.Redis, user_id: str, limit: int) -> list[str]:
    """A user's stored history, most recent first (empty when unknown or expired)."""
    raw = call(lambda: client.lrange(keys.user_history_key(user_id), 0, limit - 1))
    return [text(item) for item in raw]


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
            article = text(item)
            totals[article] = totals.get(article, 0.0) + weight * float(score)
    pairs = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))
    return pairs[:TRENDING_LIMIT]
