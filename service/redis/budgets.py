"""One Redis client per kind of work, each with its own timeout and circuit breaker.

``/related`` reads through the store's client; "for you" also reads reader histories and
trending, and ``/v1/events`` writes. If those shared the store's client, one slow kind (a
trending read stuck behind a busy Redis, a flood of event writes) would open the one breaker
and ``/related``, which needs none of them, would answer 503 too. Here each kind has its own
connection pool (so its own socket timeout: its budget) and its own breaker; a failing kind
degrades only the answers that use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from service.redis.breaker import CircuitBreaker, GuardedRedis

KINDS = ("history", "trending", "events")
# Seconds each kind may wait for Redis: a box is better without trending than late.
DEFAULT_TIMEOUTS: dict[str, float] = {"history": 0.25, "trending": 0.25, "events": 0.25}


class KindClients:
    """A :class:`GuardedRedis` per kind, on the same server as ``base``."""

    def __init__(self, base: redis.Redis, timeouts: Mapping[str, float], cooldown: float) -> None:
        pool = base.connection_pool
        self._clients: dict[str, GuardedRedis] = {}
        for kind in KINDS:
            timeout = timeouts[kind]
            options: dict[str, Any] = dict(pool.connection_kwargs)
            options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
            kind_pool = pool.__class__(
                connection_class=pool.connection_class,
                max_connections=pool.max_connections,
                **options,
            )
            self._clients[kind] = GuardedRedis(
                connection_pool=kind_pool, breaker=CircuitBreaker(cooldown=cooldown)
            )

    def __getitem__(self, kind: str) -> GuardedRedis:
        return self._clients[kind]

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each kind's breaker (for readiness and metrics)."""
        return {kind: client.breaker for kind, client in self._clients.items()}

    def close(self) -> None:
        """Close every kind's connections."""
        for client in self._clients.values():
            client.close()
