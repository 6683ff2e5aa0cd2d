"""The related-stories HTTP API: ``create_app()`` builds the Flask app.

Run it as ``gunicorn -c gunicorn.conf.py 'service:create_app()'``.

Configuration: defaults below, then ``RECS_*`` environment variables (``RECS_REDIS_URL``,
``RECS_MODEL_DIR``, ``RECS_CACHE_MAX_AGE``, ...; values are parsed as JSON where they can be),
then the ``test_config`` mapping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, request

from service import (
    articles_admin,
    auth,
    demo,
    errors,
    foryou,
    openapi,
    ops,
    ratelimit,
    related,
    resilience,
    store_ext,
    widget,
)
from service.rules import admin as rules_admin
from service.settings import ConfigError, int_setting, number_setting

__all__ = ["ConfigError", "create_app"]

CORS_EXTENSION = "recs_cors_origins"
# POST: recommendations and events from the widget (DELETE is admin-only, never a browser).
CORS_ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
CORS_ALLOW_HEADERS = "If-None-Match, If-Modified-Since, Content-Type"
CORS_MAX_AGE = "600"


def utc_now() -> datetime:
    """The current time, aware UTC (the default ``CLOCK``)."""
    return datetime.now(UTC)


DEFAULTS: dict[str, Any] = {
    "REDIS_URL": None,  # set: serve from Redis
    "MODEL_DIR": None,  # set without REDIS_URL: serve this model directory (embedded mode)
    "STORE": None,  # a ready Store instance (embedding, tests); overrides both
    "CACHE_MAX_AGE": 300,  # seconds, Cache-Control max-age of /related
    "CORS_ORIGINS": "",  # comma-separated allowed origins; empty: no CORS headers
    "CLOCK": utc_now,  # () -> aware datetime, the "now" of max_age_days
    "RETRY_AFTER": 5,  # seconds, Retry-After of 503 answers
    "RESPONSE_CACHE_SIZE": 4096,  # rendered /related answers kept per process (0: none)
    # Decoded article metadata kept per process in Redis mode, ~1 KB each (0: none): with it
    # /related reads one neighbour list from Redis instead of k + 1 metadata blobs.
    "META_CACHE_SIZE": 32_768,
    # Seconds the live version (and its update seq) is remembered: bounds how late a publish or
    # an incremental update shows (0: ask the store every time).
    "VERSION_TTL": 0.25,
    # Seconds between checks of the rules counter: a rule change is in force on every worker
    # within about this much (plus a read), and /related pays no rules round trip meanwhile.
    "RULES_TTL": 0.5,
    # Embedded mode: a JSON file of editorial rules (docs/editorial.md), re-read when it changes.
    "RULES_FILE": None,
    "MAX_K": 50,
    "DEFAULT_K": 6,
    # Every Redis call gives up after this many seconds (connect and each reply): an outage
    # must cost a request a fraction of a second, never a worker.
    "REDIS_TIMEOUT": 0.5,
    # Seconds each kind of "for you" Redis work may take, on its own pool and circuit breaker:
    # a slow trending or history read never fails /related (service/redis/budgets.py).
    "HISTORY_REDIS_TIMEOUT": 0.25,
    "TRENDING_REDIS_TIMEOUT": 0.25,
    "EVENTS_REDIS_TIMEOUT": 0.25,
    # Rows (id -> row, neighbour list, metadata) kept per process in Redis mode for "for you"
    # on the live (version, seq); ~1.1 KB each on Reuters (0: none).
    "ROW_CACHE_SIZE": 32_768,
    "BREAKER_COOLDOWN": 1.0,  # seconds Redis is skipped after a failure (service/redis/breaker.py)
    "MAX_CONTENT_LENGTH": 1024 * 1024,  # request bodies beyond this get 413 (Flask setting)
    # /readyz reports a retrain as due once incremental upserts + deletes reach this share of
    # the full build's articles (docs/incremental.md); advisory, readiness is unchanged.
    "RETRAIN_DRIFT": 0.1,
}


def _origins(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, Iterable):
        items = value
    elif value is None:
        items = ()
    else:
        raise ConfigError("CORS_ORIGINS (env RECS_CORS_ORIGINS) must list origins")
    origins = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigError("CORS_ORIGINS (env RECS_CORS_ORIGINS) must list origins")
        # Browsers send an origin as scheme://host[:port], lower case, no trailing slash.
        origin = item.strip().rstrip("/").lower()
        if origin:
            origins.add(origin)
    return frozenset(origins)


def _check_config(app: Flask) -> None:
    config = app.config
    config["CACHE_MAX_AGE"] = int_setting(config, "CACHE_MAX_AGE", 0, 31_536_000)
    config["RETRY_AFTER"] = int_setting(config, "RETRY_AFTER", 0, 86_400)
    config["MAX_K"] = int_setting(config, "MAX_K", 1, 1000)
    config["DEFAULT_K"] = int_setting(config, "DEFAULT_K", 1, config["MAX_K"])
    config["RESPONSE_CACHE_SIZE"] = int_setting(config, "RESPONSE_CACHE_SIZE", 0, 1_000_000)
    config["META_CACHE_SIZE"] = int_setting(config, "META_CACHE_SIZE", 0, 10_000_000)
    ttl = config["VERSION_TTL"]
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl <= 3600:
        raise ConfigError("VERSION_TTL (env RECS_VERSION_TTL) must be 0 to 3600 seconds")
    config["RULES_TTL"] = number_setting(config, "RULES_TTL", 0, 60)
    if not callable(config["CLOCK"]):
        raise ConfigError("CLOCK must be a callable returning an aware datetime")
    for name, low, high in (("REDIS_TIMEOUT", 0.01, 60), ("BREAKER_COOLDOWN", 0, 600)):
        value = config[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ConfigError(f"{name} (env RECS_{name}) must be {low} to {high} seconds")
    config["MAX_CONTENT_LENGTH"] = int_setting(config, "MAX_CONTENT_LENGTH", 1024, 1 << 30)
    drift = config["RETRAIN_DRIFT"]
    # A share of the build's articles; above 1 is allowed (more changes than articles).
    if isinstance(drift, bool) or not isinstance(drift, int | float) or not 0 < drift <= 100:
        raise ConfigError("RETRAIN_DRIFT (env RECS_RETRAIN_DRIFT) must be above 0, at most 100")
    config["RETRAIN_DRIFT"] = float(drift)
    app.extensions[CORS_EXTENSION] = origins = _origins(config["CORS_ORIGINS"])
    if "*" in origins:
        # A preflight is what keeps other sites' pages from posting events as their visitors.
        logging.getLogger(__name__).warning(
            "RECS_CORS_ORIGINS contains '*': any web page can post events and ask for"
            " recommendations from its visitors' browsers; list your sites' origins instead"
        )


def _cors(response: Response) -> Response:
    """Allow listed origins only; others get no CORS headers (the browser blocks them)."""
    allowed: frozenset[str] = current_app.extensions[CORS_EXTENSION]
    if not allowed:
        return response
    # The answer depends on Origin whenever an allow-list exists: shared caches must key on it.
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin is None:
        return response
    if origin.lower() in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
    elif "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"
    else:
        return response
    response.headers["Access-Control-Expose-Headers"] = "ETag, Last-Modified, Retry-After"
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        if response.status_code == 200:
            response.status_code = 204
            response.set_data(b"")
    return response


def _use_gunicorn_logging() -> None:
    """Under gunicorn, log through its error log (format, level, destination)."""
    gunicorn = logging.getLogger("gunicorn.error")
    ours = logging.getLogger("service")
    # Without this, records only reach Python's last-resort handler: WARNING and up, no time.
    if gunicorn.handlers and not ours.handlers:
        ours.handlers = list(gunicorn.handlers)
        ours.setLevel(gunicorn.level)


# Secrets are taken from the environment as the raw strings they are: from_prefixed_env parses
# values as JSON, which would turn a token such as 1234567890123456e1 into a float.
SECRETS = ("ADMIN_TOKEN", "USER_SIGNING_KEY")


def _security_headers(response: Response) -> Response:
    # Every answer is JSON or JavaScript of a known type: browsers must not guess another.
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.method == "OPTIONS" and not response.content_length:
        # Flask's automatic OPTIONS answer is empty but labelled text/html: label it as nothing.
        del response.headers["Content-Type"]
    return response


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the API app; raises :class:`ConfigError` if the config cannot serve."""
    # No default /static/ route: the widget has its own (/widget.js), nothing else is served.
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("RECS")
    for name in SECRETS:
        raw = os.environ.get(f"RECS_{name}")
        if raw is not None:
            app.config[name] = raw
    if test_config is not None:
        app.config.update(test_config)
    _check_config(app)
    _use_gunicorn_logging()
    errors.init_app(app)
    store_ext.init_app(app)
    # Metrics first: after_request hooks run in reverse, so timing wraps the CORS hook too.
    ops.init_app(app)
    related.init_app(app)
    auth.init_app(app)
    articles_admin.init_app(app)
    rules_admin.init_app(app)
    foryou.init_app(app)
    widget.init_app(app)
    demo.init_app(app)
    openapi.init_app(app)
    # After the routes and metrics: it hooks their answers and replaces the 503 handler.
    resilience.init_app(app)
    # After the routes: it wraps the limited views.
    ratelimit.init_app(app)
    app.after_request(_cors)
    app.after_request(_security_headers)
    return app
