"""Connections, the transient-error policy and retries: how every part of the package talks to
Redis, and the one exception its callers see when Redis cannot be reached.

Callers outside the package (the CLI, the benchmarks, the routes through their store) never
catch redis-py's exceptions: they wrap a block in :func:`unavailable_as_own_error` (or call
:func:`call`) and catch :class:`RedisUnavailable`, a :class:`StoreUnavailable`, so the API answers
it with a 503 and the CLI with exit 4.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.store.base import StoreUnavailable

if TYPE_CHECKING:
    from service.redis.breaker import CircuitBreaker

T = TypeVar("T")

# Errors that say the server is unreachable or too slow: worth a retry, a 503 or exit 4.
TRANSIENT: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
# Every error of redis-py, including error replies (a wrong type, OOM, a read-only replica).
ANY_ERROR: tuple[type[Exception], ...] = (redis.RedisError,)
RETRIES = 4
RETRY_BASE_DELAY = 0.1

Client = redis.Redis
Pipeline = redis.client.Pipeline


class CircuitOpen(redis.ConnectionError):
    """Redis was failing moments ago; the call was not attempted (service/redis/breaker.py)."""


class RedisUnavailable(StoreUnavailable):
    """Redis could not be reached, timed out or failed (the message says which)."""


def text(value: Any) -> str:
    """A reply as ``str`` (redis-py returns bytes unless the client decodes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def call(action: Callable[[], T], errors: tuple[type[Exception], ...] = TRANSIENT) -> T:
    """Run a Redis action; ``errors`` (by default connection trouble) become
    :class:`RedisUnavailable`."""
    try:
        return action()
    except errors as exc:
        raise RedisUnavailable(
            f"redis unavailable: {one_line(exc)}", failing_fast=isinstance(exc, CircuitOpen)
        ) from exc


@contextmanager
def unavailable_as_own_error(errors: tuple[type[Exception], ...] = ANY_ERROR) -> Iterator[None]:
    """Turn redis-py's ``errors`` raised in the block into :class:`RedisUnavailable`."""
    try:
        yield
    except errors as exc:
        raise RedisUnavailable(one_line(exc), failing_fast=isinstance(exc, CircuitOpen)) from exc


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (redis-py's can span several)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def with_retry(action: Callable[[], T], *, retries: int = RETRIES) -> T:
    """Run ``action``, retrying transient connection errors with exponential backoff."""
    for attempt in range(retries + 1):
        try:
            return action()
        except TRANSIENT:
            if attempt == retries:
                raise
            time.sleep(RETRY_BASE_DELAY * 2**attempt)
    raise AssertionError("unreachable")


def execute(
    client: redis.Redis, build: Callable[[redis.client.Pipeline], None], *, transaction: bool
) -> list[Any]:
    """Build and run a pipeline, rebuilding it on each retry (a failed execute empties it)."""

    def attempt() -> list[Any]:
        pipe = client.pipeline(transaction=transaction)
        build(pipe)
        return pipe.execute()

    return with_retry(attempt)


def connect(
    url: str,
    *,
    timeout: float,
    connect_timeout: float | None = None,
    retries: int = 0,
    max_connections: int | None = None,
    breaker: CircuitBreaker | None = None,
) -> redis.Redis:
    """A client of ``url`` (ValueError for a malformed URL). Nothing is sent yet.

    ``retries``: immediate retries of a command on a dropped connection (the batch jobs retry
    with backoff themselves, so they pass 0). With ``breaker`` every command goes through it
    (service/redis/breaker.py): the API's clients, where an outage must cost one timeout.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout if connect_timeout is None else connect_timeout,
        "retry": Retry(NoBackoff(), retries),
        "max_connections": max_connections,
        "decode_responses": False,
    }
    if breaker is not None:
        from service.redis.breaker import GuardedRedis  # it imports TRANSIENT from here

        return GuardedRedis.from_url(url, breaker=breaker, **options)
    return redis.Redis.from_url(url, **options)


def connect_checked(
    url: str, *, timeout: float, connect_timeout: float | None = None, retries: int = 0
) -> redis.Redis:
    """:func:`connect`, then a ping (transient errors retried with backoff).

    ValueError for a malformed URL; :class:`RedisUnavailable` when the server does not answer
    (the batch jobs fail fast before doing any work).
    """
    client = connect(url, timeout=timeout, connect_timeout=connect_timeout, retries=retries)
    try:
        with unavailable_as_own_error():
            with_retry(client.ping)
    except RedisUnavailable:
        client.close()
        raise
    return client
