"""Trending as a request reads it: recomputed at most every ``settings.cache_seconds`` per
process, whatever the store (both stores' answers may be that old: service/store/base.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from service.store.base import HistorySettings

Trending = list[tuple[str, float]]


class TrendingCache:
    """The last trending list of one process and until when it may be served.

    The fallback reads the ids, the popularity prior the counts too, so one computation per
    ``cache_seconds`` serves every request of the process in between.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (settings, expires, value) swapped as one reference: readers need no lock.
        self._entry: tuple[HistorySettings | None, float, Trending] = (None, -math.inf, [])

    def get(self, settings: HistorySettings, compute: Callable[[], Trending]) -> Trending:
        """The cached list for ``settings``, or ``compute()``'s when it is older than the
        cache time (or was computed under other settings)."""
        moment = self._clock()
        cached_settings, expires, value = self._entry
        if cached_settings == settings and moment < expires:
            return value
        value = compute()
        self._entry = (settings, moment + settings.cache_seconds, value)
        return value
