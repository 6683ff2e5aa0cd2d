"""The replay data: usable impressions, their halves, and the popularity and trending counts
the baselines and the prior are fed, from nothing at or after each replayed impression."""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.importers.mind import Impression

HALVES = ("all", "tune", "test")
# The API's trending defaults (service/foryou.py, service/redis/events.py), not tuned here.
TRENDING_WINDOW_HOURS = 24
TRENDING_HALF_LIFE_HOURS = 6.0
TRENDING_LIMIT = 500


@dataclass(frozen=True, slots=True)
class ReplayCase:
    """One usable impression: the reader's history, most recent first, and the clicks to find.

    ``shown`` is the impression's candidate list (corpus articles not already read, log order)
    when it holds both a clicked and an unclicked article, else empty: protocol 2 skips it.
    """

    impression_id: str
    time: datetime
    history: tuple[str, ...]
    clicked: frozenset[str]
    shown: tuple[str, ...] = ()


def replay_cases(
    impressions: Iterable[Impression], known: Mapping[str, Any]
) -> tuple[list[ReplayCase], dict[str, int]]:
    """The usable impressions, and how many were dropped for what."""
    counts = Counter[str]()
    cases = []
    for impression in impressions:
        counts["impressions"] += 1
        # MIND lists a history oldest first; ranking wants the most recent first.
        history = tuple(reversed(impression.history))
        read = set(history)
        known_history = [h for h in history if h in known]
        clicked = frozenset(c for c in impression.clicked if c in known and c not in read)
        if known_history:
            counts["with_known_history"] += 1
        if clicked:
            counts["with_known_click"] += 1
        if known_history and clicked:
            shown = tuple(
                dict.fromkeys(n for n, _ in impression.impressions if n in known and n not in read)
            )
            if not any(n in clicked for n in shown) or all(n in clicked for n in shown):
                shown = ()
            cases.append(
                ReplayCase(
                    impression.impression_id,
                    datetime.fromisoformat(impression.time),
                    history,
                    clicked,
                    shown,
                )
            )
    counts["usable"] = len(cases)
    counts["clicks_to_find"] = sum(len(c.clicked) for c in cases)
    counts["usable_candidates"] = sum(1 for c in cases if c.shown)
    counts["candidates"] = sum(len(c.shown) for c in cases)
    return cases, dict(counts)


def split_cases(cases: Sequence[ReplayCase], half: str, seed: int = 0) -> list[ReplayCase]:
    """``all`` the cases, or one half of them (``tune``: the first half, rounded up, of a
    seeded shuffle of their impression ids; ``test``: the rest). The same seed always splits
    the same impressions the same way."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {', '.join(HALVES)}")
    if half == "all":
        return list(cases)
    ids = sorted({case.impression_id for case in cases})
    random.Random(seed).shuffle(ids)
    tune = set(ids[: (len(ids) + 1) // 2])
    return [case for case in cases if (case.impression_id in tune) == (half == "tune")]


def popularity_counts(impressions: Iterable[Impression], known: Mapping[str, Any]) -> Counter[str]:
    """Corpus article -> how many distinct readers have it in their ``History``."""
    readers: dict[str, set[str]] = {}
    for impression in impressions:
        for article_id in impression.history:
            if article_id in known:
                readers.setdefault(article_id, set()).add(impression.user_id)
    return Counter({article_id: len(users) for article_id, users in readers.items()})


def click_events(
    impressions: Iterable[Impression], known: Mapping[str, Any]
) -> list[tuple[float, str]]:
    """(Unix time, article id) of the clicks on corpus articles in the log, oldest first: what
    the API's ``/v1/events`` would have counted for trending, where a reader counts once per
    article (service/redis/events.py; here the first click, as a history holds 50 reads)."""
    clicks = sorted(
        (datetime.fromisoformat(impression.time).timestamp(), article_id, impression.user_id)
        for impression in impressions
        for article_id in impression.clicked
        if article_id in known
    )
    seen: set[tuple[str, str]] = set()
    events = []
    for time, article_id, user_id in clicks:
        if (user_id, article_id) not in seen:
            seen.add((user_id, article_id))
            events.append((time, article_id))
    return events


def trending_at(
    events: Sequence[tuple[float, str]],
    moment: datetime,
    *,
    window_hours: int = TRENDING_WINDOW_HOURS,
    half_life_hours: float = TRENDING_HALF_LIFE_HOURS,
    limit: int = TRENDING_LIMIT,
) -> list[tuple[str, float]]:
    """Trending (id, count) at ``moment``, best first (ties by id), as the API computes it
    (service/redis/events.py): events in hourly UTC buckets, the last ``window_hours`` buckets, each
    weighted ``0.5 ** (age in hours / half_life_hours)``. Only events strictly before
    ``moment`` count: the impression's own clicks are what is to be found."""
    now = moment.timestamp()
    hour = int(now // 3600)
    oldest = (hour - window_hours + 1) * 3600
    start = bisect.bisect_left(events, (oldest, ""))
    stop = bisect.bisect_left(events, (now, ""))
    counts: dict[str, float] = {}
    for time, article_id in events[start:stop]:
        weight = math.pow(0.5, (hour - int(time // 3600)) / half_life_hours)
        counts[article_id] = counts.get(article_id, 0.0) + weight
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:limit]
