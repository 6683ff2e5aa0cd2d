"""The rule set each process keeps, so ``/related`` reads the rules without a round trip.

A cheap probe (the Redis counter, a file's mtime) is asked at most once per ``ttl`` seconds;
the whole set is read again only when the probe's answer changed. With ``ttl`` 0.5 s a change
is in force on every worker within a second. When the probe or the read fails (Redis down, a
rules file half written), the last set read stays in force: a takedown must never lapse
because of an outage. Before any set was read, the failure is raised like any other read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

from service.store.base import RuleSet

log = logging.getLogger(__name__)

DEFAULT_RULES_TTL = 0.5


class RulesCache:
    """The last rule set read, re-read when ``probe()`` answers something new."""

    def __init__(
        self,
        probe: Callable[[], Hashable],
        load: Callable[[], tuple[Hashable, RuleSet]],
        ttl: float = DEFAULT_RULES_TTL,
        *,
        keep_on: tuple[type[Exception], ...],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``load`` returns the set with the probe value it belongs to; ``keep_on``: the errors
        after which the last set stays in force (others propagate)."""
        self._probe = probe
        self._load = load
        self.ttl = ttl
        self._keep_on = keep_on
        self._clock = clock
        self._lock = threading.Lock()
        self._value: RuleSet | None = None
        self._token: Hashable = None
        self._checked = float("-inf")
        self._failing = False

    def get(self) -> RuleSet:
        """The rules in force, probing the source at most once per ``ttl``."""
        value = self._value
        if value is not None and self._clock() < self._checked + self.ttl:
            return value
        # One thread refreshes; the others keep answering from the set they have.
        if not self._lock.acquire(blocking=value is None):
            return value  # type: ignore[return-value]  # not None: a blocking acquire otherwise
        try:
            return self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> RuleSet:
        now = self._clock()
        if self._value is not None and now < self._checked + self.ttl:
            return self._value  # refreshed by another thread while this one waited
        try:
            token = self._probe()
            if self._value is None or token != self._token:
                self._token, self._value = self._load()
        except self._keep_on as exc:
            if self._value is None:
                raise
            if not self._failing:
                log.warning("rules not refreshed, the last set read stays in force: %s", exc)
            self._failing = True
            # Retried after the ttl, not on every request: an outage must not cost each one.
            self._checked = now
            return self._value
        if self._failing:
            log.warning("rules refreshed again (seq %d)", self._value.seq)
        self._failing = False
        self._checked = now
        return self._value

    def forget(self) -> None:
        """Drop the remembered set (the next call reads the source)."""
        with self._lock:
            self._value, self._token, self._checked = None, None, float("-inf")
