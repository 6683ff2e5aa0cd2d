"""How the ``recs`` commands reach Redis and report its failures (through service/redis/ only).

A malformed ``--redis-url`` exits 2, an unreachable or failing Redis exits 4 and a refused
publish or rollback exits 3, each as one ``error: ...`` line (README, "Exit codes").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from scripts.common import EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_UNAVAILABLE, CliError
from service.redis import publish as pub
from service.redis import versions
from service.redis.apply import WriterError
from service.redis.client import (
    ANY_ERROR,
    Client,
    RedisUnavailable,
    call,
    connect_checked,
    unavailable_as_own_error,
)

# Publishing sends big pipelines: allow more than the API's 0.5 s per reply.
SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 2.0


def redact(url: str) -> str:
    """``url`` with any password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def connect(url: str) -> Client:
    """A checked connection to ``url`` or a one-line CliError (exit 4 when unreachable)."""
    try:
        # No client-side retries: service/redis/ retries with backoff itself, and client
        # retries would multiply them.
        return connect_checked(
            url, timeout=SOCKET_TIMEOUT, connect_timeout=CONNECT_TIMEOUT, retries=0
        )
    except ValueError as exc:
        raise CliError(f"invalid --redis-url {redact(url)!r}: {exc}", EXIT_BAD_INPUT) from None
    except RedisUnavailable as exc:
        raise CliError(f"cannot reach Redis at {redact(url)}: {exc}", EXIT_UNAVAILABLE) from None


@contextmanager
def publish_errors(action: str, client: Client) -> Iterator[None]:
    """Turn Redis and publish failures into one-line CliErrors naming the live version."""
    try:
        with unavailable_as_own_error():
            yield
    except pub.PublishError as exc:
        raise CliError(f"{action} refused: {exc}", EXIT_REFUSED) from None
    except RedisUnavailable as exc:
        raise CliError(f"{action} failed: {exc}; {_live_note(client)}", EXIT_UNAVAILABLE) from None


def _live_note(client: Client) -> str:
    try:
        live = call(lambda: versions.current_version(client), ANY_ERROR)
    except RedisUnavailable:
        return "the live version was not changed"
    return f"live version {live} untouched" if live else "nothing was published"


@contextmanager
def writer_errors(url: str) -> Iterator[None]:
    """Turn update-writer and Redis failures into one-line CliErrors (exit 2 and 4)."""
    try:
        with unavailable_as_own_error():
            yield
    except WriterError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    except RedisUnavailable as exc:
        raise CliError(f"Redis at {redact(url)} failed: {exc}", EXIT_UNAVAILABLE) from None
