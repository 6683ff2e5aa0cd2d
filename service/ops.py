"""Operations endpoints: ``/healthz``, ``/readyz`` and Prometheus ``/metrics``."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.articles_admin import live_drift
from service.resilience import readiness
from service.store.base import Store, StoreUnavailable
from service.store_ext import get_store

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)

EXTENSION = "recs_metrics"
# Request latencies are milliseconds when healthy; the low buckets resolve that range.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"


class VersionCollector(Collector):
    """``recs_model_version_info``: the live version, read from the store at scrape time."""

    def __init__(self, store: Callable[[], Store], on_error: Callable[[], None]) -> None:
        self._store = store
        self._on_error = on_error

    def describe(self) -> list[Metric]:
        # Declared so registering does not call collect() (a store round trip at start).
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        try:
            info = self._store().current_version()
        except StoreUnavailable:
            self._on_error()
            info = None
        if info is not None:
            family.add_metric([info.version, info.built_at], 1.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "recs_model_version_info",
            "The live model version (value 1), labelled with its id and build time.",
            labels=["version", "built_at"],
        )


@dataclass
class Metrics:
    """One app's metrics, in a registry of its own so apps (and tests) never collide."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    store_errors: Counter
    version: VersionCollector
    _children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = field(default_factory=dict)

    def observe(self, endpoint: str, method: str, status: str, seconds: float | None) -> None:
        """Count one request and record its latency."""
        # labels() validates and locks on every call; the children are reused instead.
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, status),
                self.latency.labels(endpoint, status),
            )
            self._children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    @classmethod
    def create(cls, store: Callable[[], Store]) -> Metrics:
        """Create and register the metrics in a new registry."""
        registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            "recs_http_requests",
            "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        latency = Histogram(
            "recs_http_request_duration_seconds",
            "HTTP request latency by endpoint and status.",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        store_errors = Counter(
            "recs_store_errors", "Store operations that failed (unreachable).", registry=registry
        )
        version = VersionCollector(store, store_errors.inc)
        registry.register(version)
        return cls(registry, requests, latency, store_errors, version)


def _metrics() -> Metrics:
    metrics: Metrics = current_app.extensions[EXTENSION]
    return metrics


def _json(body: dict[str, Any], status: int = 200) -> Response:
    text = json.dumps(body, separators=(",", ":"))
    response = Response(text, status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    # Never touches the store: a Redis outage must not get healthy API processes restarted.
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the store answers and a model version is live (or degraded: stale answers)."""
    try:
        store = get_store()
        if not store.ping():
            _metrics().store_errors.inc()
            return _json(*readiness())
        info = store.current_version()
        if info is None:
            return _json(*readiness("no model version is published"))
        drift = live_drift(store, info.version)
    except StoreUnavailable as exc:
        log.warning("readiness: store unavailable: %s", exc)
        _metrics().store_errors.inc()
        return _json(*readiness())
    body: dict[str, Any] = {
        "status": "ready",
        "model_version": info.version,
        "built_at": info.built_at,
        "published_at": info.published_at,
        "articles": info.articles,
    }
    if drift is not None:
        # Advisory: a due retrain never makes an instance unready (the answers are still right,
        # new articles just match on the build's vocabulary only).
        body["incremental"] = drift
    return _json(body)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition."""
    registry = _metrics().registry
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several gunicorn workers: sum their files, or each scrape sees one worker's counts.
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_metrics().version)
    response = Response(generate_latest(registry), mimetype=None)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


def _start_timer() -> None:
    g.recs_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("recs_started", None)
    rule = request.url_rule
    # The rule, not the path: article ids in labels would be unbounded cardinality.
    endpoint = rule.rule if rule is not None else UNMATCHED
    elapsed = None if started is None else time.perf_counter() - started
    _metrics().observe(endpoint, request.method, str(response.status_code), elapsed)
    return response


def init_app(app: Flask) -> None:
    """Create the app's metrics, hook request timing, and register the ops routes."""
    app.extensions[EXTENSION] = Metrics.create(lambda: app.extensions["recs_store"])
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)
