"""Serving through a Redis outage: a "last known good" cache of answers, marked stale when used.

A read endpoint calls :func:`serve_stale_on_failure` with a canonical key of its validated
query before it touches the store. Every 200 answer of such a request is then remembered (an
LRU bounded in entries and bytes, per process), and if the store fails later for the same
query -- unreachable, timing out, or the circuit breaker (service/redis/breaker.py) failing fast --
the remembered answer is served instead of a 503, with::

    X-Recs-Stale: 1
    Warning: 110 - "Response is Stale"
    Cache-Control: public, max-age=0    (private / no-store kept from the original answer)
    Age: seconds since it was fresh

Answers carry their model version in the body; a publish simply replaces an entry the next
time its query is answered fresh. An answer may come with a check (:func:`stale_check`): the
editorial rules it was made under may have changed, or the clock passed an embargo, an expiry
or a rule window, since it was remembered; an answer failing its check is not served (the
request gets the 503), so a takedown never comes back through an outage. With nothing
remembered the answer stays a quick 503 with Retry-After. ``/readyz`` reports ``degraded``
(200) while stale answers can be served, so a load balancer keeps the instances that still
have something to say (see :func:`readiness`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import Counter

from service.errors import error_response
from service.settings import int_setting
from service.store.base import NoLiveVersion, StoreUnavailable

log = logging.getLogger(__name__)

EXTENSION = "recs_resilience"
STALE_HEADER = "X-Recs-Stale"
STALE_WARNING = '110 - "Response is Stale"'
STALE_CACHE_CONTROL = "public, max-age=0"

DEFAULTS: dict[str, Any] = {
    "STALE_CACHE_SIZE": 4096,  # answers remembered per process for outages (0: none)
    "STALE_CACHE_BYTES": 32 * 1024 * 1024,  # and at most this many body bytes
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A rendered 200 answer and the validators that came with it."""

    body: bytes
    mimetype: str
    etag: str | None
    last_modified: str | None
    cache_control: str | None
    stored_at: float  # time.monotonic()
    check: Callable[[], bool] | None = None  # whether it may still be served (stale_check)


class AnswerCache:
    """A thread-safe LRU of answers bounded by entry count and total body bytes."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._data: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Answer | None:
        """The remembered answer of ``key`` (any model version), or ``None``."""
        with self._lock:
            answer = self._data.get(key)
            if answer is not None:
                self._data.move_to_end(key)
            return answer

    def put(self, key: tuple[str, str], answer: Answer) -> None:
        """Remember ``answer``, replacing ``key``'s previous one; evict beyond the bounds."""
        size = len(answer.body)
        if size > self.max_bytes:
            return  # would evict everything else for one answer
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= len(old.body)
            self._data[key] = answer
            self.nbytes += size
            while len(self._data) > self.size or self.nbytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self.nbytes -= len(dropped.body)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class Resilience:
    """One app's stale cache and counters."""

    cache: AnswerCache | None
    stale_served: Counter
    breaker_opens: Counter
    short_circuited: Counter


def _state() -> Resilience:
    state: Resilience = current_app.extensions[EXTENSION]
    return state


def serve_stale_on_failure(namespace: str, key: str) -> None:
    """Remember this request's 200 answer under ``(namespace, key)``; serve it if the store fails.

    ``key`` must be canonical for the validated query (equal for queries with equal answers)
    and must not depend on anything the store returns.
    """
    g.recs_fallback = (namespace, key)


def stale_check(check: Callable[[], bool]) -> None:
    """Serve this request's answer stale only while ``check()`` holds (asked when serving)."""
    g.recs_stale_check = check


def _remember(response: Response) -> Response:
    key = g.get("recs_fallback")
    if key is None or response.status_code != 200 or response.direct_passthrough:
        return response
    cache = _state().cache
    if cache is None or STALE_HEADER in response.headers:
        return response
    cache.put(
        key,
        Answer(
            body=response.get_data(),
            mimetype=response.mimetype or "application/json",
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            cache_control=response.headers.get("Cache-Control"),
            stored_at=time.monotonic(),
            check=g.get("recs_stale_check"),
        ),
    )
    return response


def _stale_cache_control(original: str | None) -> str:
    """Stale answers expire at once; a personal answer (private, no-store) stays so."""
    directives = {part.strip().split("=")[0].lower() for part in (original or "").split(",")}
    if "no-store" in directives:
        return "no-store"
    if "private" in directives:
        return "private, max-age=0"
    return STALE_CACHE_CONTROL


def _stale_response(answer: Answer) -> Response:
    if answer.etag is not None and request.if_none_match.contains_weak(answer.etag.strip('"')):
        response = Response(status=304)
    else:
        response = Response(answer.body, mimetype=answer.mimetype)
    headers = response.headers
    headers[STALE_HEADER] = "1"
    headers["Warning"] = STALE_WARNING
    headers["Cache-Control"] = _stale_cache_control(answer.cache_control)
    headers["Age"] = str(int(time.monotonic() - answer.stored_at))
    if answer.etag is not None:
        headers["ETag"] = answer.etag
    if answer.last_modified is not None:
        headers["Last-Modified"] = answer.last_modified
    return response


def _handle_store_unavailable(exc: StoreUnavailable) -> Response:
    # Replaces service.errors' handler for this exception: same 503 when nothing is remembered.
    state = _state()
    key = g.get("recs_fallback")
    answer = None if key is None or state.cache is None else state.cache.get(key)
    if answer is not None and (answer.check is None or answer.check()):
        state.stale_served.inc()
        return _stale_response(answer)
    if isinstance(exc, NoLiveVersion):
        return error_response(503, "unavailable", str(exc))
    metrics = current_app.extensions.get("recs_metrics")
    if metrics is not None:
        metrics.store_errors.inc()
    # A failing-fast call is the breaker doing its job: logging each one would flood the log
    # during an outage (the breaker logs once when it opens).
    if exc.failing_fast:
        log.debug("store unavailable (circuit open)")
    else:
        log.warning("store unavailable: %s", exc)
    return error_response(503, "unavailable", "the article store is unavailable; retry later")


def readiness(reason: str = "the article store is unreachable") -> tuple[dict[str, Any], int]:
    """The ``/readyz`` answer when the store cannot serve (unreachable, or no version since a
    restart emptied it): degraded (200) or down (503).

    Degraded means remembered answers are being served: every instance shares the same Redis,
    so failing readiness then would take them all out of the load balancer and turn stale
    answers into connection errors.
    """
    state = current_app.extensions.get(EXTENSION)
    cached = 0 if state is None or state.cache is None else len(state.cache)
    store = current_app.extensions.get("recs_store")
    breaker = None if store is None else store.breakers().get("related")
    circuit = "none" if breaker is None else breaker.state
    if cached:
        body = {
            "status": "degraded",
            "reason": f"{reason}; serving cached answers marked stale",
            "store": "down",
            "circuit": circuit,
            "cached_answers": cached,
        }
        return body, 200
    body = {
        "status": "not_ready",
        "reason": reason,
    }
    return body, 503


def init_app(app: Flask) -> None:
    """Create the stale cache and counters, and hook answer recording and the 503 handler."""
    for name, value in DEFAULTS.items():
        app.config.setdefault(name, value)
    size = int_setting(app.config, "STALE_CACHE_SIZE", 0, 1_000_000)
    max_bytes = int_setting(app.config, "STALE_CACHE_BYTES", 0, 1 << 34)
    registry = app.extensions["recs_metrics"].registry
    state = Resilience(
        cache=AnswerCache(size, max_bytes) if size > 0 and max_bytes > 0 else None,
        stale_served=Counter(
            "recs_stale_answers",
            "Answers served from the stale cache while the store was unavailable.",
            registry=registry,
        ),
        breaker_opens=Counter(
            "recs_store_circuit_opens",
            "Times the Redis circuit breaker opened (store failing).",
            registry=registry,
        ),
        short_circuited=Counter(
            "recs_store_short_circuited",
            "Store calls failed fast by the open circuit breaker (not attempted).",
            registry=registry,
        ),
    )
    app.extensions[EXTENSION] = state
    breaker = app.extensions["recs_store"].breakers().get("related")
    if breaker is not None:
        breaker.on_open = state.breaker_opens.inc
        breaker.on_reject = state.short_circuited.inc
    app.after_request(_remember)
    # Registered after service.errors' handler for the same class, so it replaces that one.
    app.register_error_handler(StoreUnavailable, _handle_store_unavailable)
