"""A circuit breaker around the API's Redis client, so an outage costs one timeout, not one each.

Without it, every request during an outage waits for the socket timeout (twice: redis-py retries
once) before it can be answered from the stale cache or with a 503, and a few hundred requests
a second of that ties up every worker. With it, the first failure opens the circuit: for
``cooldown`` seconds calls fail at once with :class:`CircuitOpen`. Then one call (the probe) is
let through; if it succeeds the circuit closes, if it fails the cool-down starts again. So the
API recovers by itself when Redis comes back, at most ``cooldown`` seconds later.

The breaker sits in the client (:class:`GuardedRedis`), not in a store wrapper, so every Redis
read of a request is covered: the related store's scripts, and the "for you" history and
trending reads, which use the store's client directly. :class:`CircuitOpen` is a
``redis.ConnectionError``, so every handler of :data:`service.redis.client.TRANSIENT` already
turns it into ``StoreUnavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.client import Pipeline

from service.redis.client import TRANSIENT, CircuitOpen

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

DEFAULT_COOLDOWN = 1.0
# A probe that never reports back (its worker was killed mid-call) must not keep the circuit
# half-open forever: after this long another caller may probe.
DEFAULT_PROBE_TIMEOUT = 5.0


class CircuitBreaker:
    """Closed -> (``threshold`` consecutive failures) -> open -> (``cooldown``) -> half-open.

    Thread-safe; one per process (gunicorn workers each have their own, which is fine: each
    pays at most one timeout per cool-down).
    """

    def __init__(
        self,
        cooldown: float = DEFAULT_COOLDOWN,
        threshold: int = 1,
        *,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[], None] | None = None,
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        if cooldown < 0 or threshold < 1 or probe_timeout <= 0:
            raise ValueError("cooldown >= 0, threshold >= 1 and probe_timeout > 0 required")
        self.cooldown = cooldown
        self.threshold = threshold
        self.probe_timeout = probe_timeout
        self.on_open = on_open
        self.on_reject = on_reject
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_deadline = 0.0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (open turns half-open once the cool-down ends)."""
        with self._lock:
            if self._state == OPEN and self._clock() >= self._opened_at + self.cooldown:
                return HALF_OPEN
            return self._state

    def seconds_until_probe(self) -> float:
        """How long until a call may be tried again (0 when closed or due)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown - self._clock())

    def call(self, action: Callable[[], T]) -> T:
        """Run ``action`` unless the circuit is open; record how it went."""
        # Lock-free fast path: the healthy case must cost next to nothing per command.
        if self._state != CLOSED:
            self._admit()
        try:
            result = action()
        except TRANSIENT:
            # Only an unreachable or slow server is a failure (TRANSIENT, the package's policy).
            self.record_failure()
            raise
        except Exception:
            # The server answered (an error reply, a script error): it is reachable.
            self.record_success()
            raise
        # Anything else (BaseException: the worker is being killed) leaves the state as it is;
        # a probe that never reports is retried after probe_timeout.
        if self._state != CLOSED or self._failures:
            self.record_success()
        return result

    def _admit(self) -> None:
        """Let a call through, or raise :class:`CircuitOpen`."""
        with self._lock:
            now = self._clock()
            if self._state == OPEN and now >= self._opened_at + self.cooldown:
                self._state = HALF_OPEN
                self._probe_deadline = 0.0
            if self._state == HALF_OPEN and now >= self._probe_deadline:
                # This caller is the probe; the others keep failing fast until it reports.
                self._probe_deadline = now + self.probe_timeout
                return
            if self._state == CLOSED:
                return  # closed by another thread meanwhile
            wait = max(0.0, self._opened_at + self.cooldown - now)
        if self.on_reject is not None:
            self.on_reject()
        raise CircuitOpen(f"circuit open after Redis failures; next probe in {wait:.1f} s")

    def record_failure(self) -> None:
        """A call could not reach the server."""
        with self._lock:
            self._failures += 1
            was = self._state
            # Already open: a call admitted before the circuit opened failed too; nothing new.
            if not (was == HALF_OPEN or (was == CLOSED and self._failures >= self.threshold)):
                return
            self._state = OPEN
            self._opened_at = self._clock()
        log.warning(
            "redis circuit open (%s -> open after %d failure(s)); failing fast for %.1f s",
            was,
            self._failures,
            self.cooldown,
        )
        if self.on_open is not None:
            self.on_open()

    def record_success(self) -> None:
        """A call reached the server."""
        with self._lock:
            was = self._state
            self._state = CLOSED
            self._failures = 0
        if was != CLOSED:
            log.warning("redis circuit closed: the store answers again")


class GuardedPipeline(Pipeline):
    """A pipeline whose ``execute`` (the one network round trip) goes through the breaker."""

    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        run = super().execute
        return self.breaker.call(lambda: run(raise_on_error))


class GuardedRedis(redis.Redis):
    """A ``redis.Redis`` whose commands, scripts and pipelines go through a circuit breaker."""

    def __init__(self, *args: Any, breaker: CircuitBreaker | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breaker = breaker if breaker is not None else CircuitBreaker()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> GuardedRedis:
        """As ``redis.Redis.from_url``, plus ``breaker=``."""
        breaker = kwargs.pop("breaker", None)
        client = super().from_url(url, **kwargs)
        assert isinstance(client, GuardedRedis)
        if breaker is not None:
            client.breaker = breaker
        return client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        run = super().execute_command
        return self.breaker.call(lambda: run(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        pipe = GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.breaker = self.breaker
        return pipe
