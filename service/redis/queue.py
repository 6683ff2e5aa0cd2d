"""Incremental updates through Redis: a queue the API and the CLI write, one writer applies.

Nothing online writes the model. ``PUT``/``DELETE /v1/articles/<id>`` and ``recs upsert`` /
``recs delete`` only append an entry to the stream :data:`service.redis.keys.UPDATES`; the
one :class:`service.redis.writer.Writer` holding :data:`service.redis.keys.UPDATE_LOCK` (``recs
worker``, or the CLI itself when no worker runs) applies the entries in stream order to the
live version, each one in a single MULTI/EXEC, and pushes a JSON result to
:func:`service.redis.keys.ack_key` for whoever waits. This module is the light half the API
imports: queue, acks and drift.

Reconcile rule: a published version records ``as_of`` (when its build's input was read). When
the live version changes, the writer replays every entry since ``as_of - margin`` onto it, so
updates enqueued while a full build was running are not lost by its publish; replays are
idempotent (an identical upsert or a delete of a missing id changes nothing).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import redis

from models.records import Article, validate_id
from service.redis import keys
from service.redis.client import text
from service.redis.keys import utc_now

log = logging.getLogger(__name__)

# The stream is capped (approximately) so a writer that is down for days cannot fill Redis.
STREAM_MAXLEN = 1_000_000
# Results wait this long for a reader (a waiter that gave up leaves no garbage behind).
ACK_TTL_S = 120
# How late Redis may end a blocking command (it checks timeouts about every 1/hz seconds).
BLOCK_SLACK_S = 0.15
# A share of upserts + deletes since the build above which a full retrain is due.
DEFAULT_DRIFT_THRESHOLD = 0.1

SOURCES = ("api", "cli")


# ---------------------------------------------------------------------------------------------
# The queue side: used by the API routes and the CLI.


def _enqueue(client: redis.Redis, fields: dict[str, str]) -> str:
    # Not retried: a lost reply after a successful XADD would queue the update twice (harmless,
    # replays are idempotent, but the caller would wait for the wrong entry).
    entry = client.xadd(keys.UPDATES, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    return text(entry)


def enqueue_upsert(client: redis.Redis, article: Article, *, by: str) -> str:
    """Queue an upsert of a validated article; return its stream entry id."""
    if by not in SOURCES:
        raise ValueError(f"by must be one of {SOURCES}, got {by!r}")
    record = json.dumps(article.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return _enqueue(
        client, {"op": "upsert", "id": article.id, "article": record, "at": utc_now(), "by": by}
    )


def enqueue_delete(client: redis.Redis, article_id: str, *, by: str) -> str:
    """Queue a delete of an article id (validated here); return its stream entry id."""
    if by not in SOURCES:
        raise ValueError(f"by must be one of {SOURCES}, got {by!r}")
    validate_id(article_id)
    return _enqueue(client, {"op": "delete", "id": article_id, "at": utc_now(), "by": by})


def _socket_timeout(client: redis.Redis) -> float | None:
    kwargs = getattr(client, "connection_pool", None)
    value = kwargs.connection_kwargs.get("socket_timeout") if kwargs is not None else None
    return float(value) if value else None


def wait_applied(client: redis.Redis, entry_id: str, timeout: float) -> dict[str, Any] | None:
    """The writer's result for one entry, waiting up to ``timeout`` s; ``None`` on timeout.

    The result is ``{"entry", "op", "id", "status": "applied"|"rejected", "changed", "error",
    "version"}``. Each wait is sliced below the client's socket timeout, so an API client with
    a 0.5 s timeout can wait for seconds without its read timing out.
    """
    key = keys.ack_key(entry_id)
    socket_timeout = _socket_timeout(client)
    # Redis ends a blocking wait up to 1/hz late (100 ms by default): keep that much slack.
    slice_s = (
        1.0
        if socket_timeout is None
        else max(0.01, min(1.0, socket_timeout / 2, socket_timeout - BLOCK_SLACK_S))
    )
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        remaining = deadline - time.monotonic()
        # BLPOP takes decimal seconds (Redis >= 6); 0 would mean "forever".
        wait = max(0.01, min(slice_s, remaining))
        reply = client.blpop([key], timeout=wait)
        if reply is not None:
            result: dict[str, Any] = json.loads(reply[1])
            return result
        if time.monotonic() >= deadline:
            return None


def writer_active(client: redis.Redis) -> bool:
    """Whether a writer holds the update lock (a worker will apply what is queued)."""
    return bool(client.exists(keys.UPDATE_LOCK))


def drift(info: Mapping[Any, Any], threshold: float) -> dict[str, Any]:
    """How far a version has moved from its build: the retrain signal.

    ``info`` is a version's info hash (str or bytes, as a client returns it). ``share`` is
    (upserts + deletes) / articles at publish; ``retrain_due`` once it reaches ``threshold``:
    new articles are vectorised with the build's vocabulary and IDF, which know none of their
    new words (see README "Incremental updates").
    """
    values = {text(k): text(v) for k, v in info.items()}
    upserts = int(values.get("upserts") or 0)
    deletes = int(values.get("deletes") or 0)
    base = int(values.get("base_articles") or values.get("articles") or 0)
    share = (upserts + deletes) / base if base else float(upserts + deletes > 0)
    return {
        "upserts": upserts,
        "deletes": deletes,
        "base_articles": base,
        "share": round(share, 6),
        "retrain_due": share >= threshold,
    }
