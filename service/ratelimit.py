"""Per-client rate limits on the public write path, with Flask-Limiter.

``RECS_EVENTS_RATE_LIMIT`` limits ``POST /v1/events`` and ``RECS_RECOMMENDATIONS_RATE_LIMIT``
``/v1/recommendations`` per client address, in Flask-Limiter's syntax (``120/minute``,
``10/second;300/minute``); ``off`` turns one off. ``/related`` has no limit: it is cacheable and
a CDN answers most of it. In Redis mode the counts live in Redis, so every gunicorn worker and
every instance shares them; in embedded mode they are per process.

The client is ``request.remote_addr``, the TCP peer, which a client cannot fake; an IPv6 client
is its /64 (service/client_address.py).
Behind proxies, ``RECS_TRUSTED_PROXIES`` says how many of them append to ``X-Forwarded-For``
(werkzeug's ProxyFix takes the address that many hops from the right); with 0 the header is
ignored, so a spoofed ``X-Forwarded-For`` never changes the key.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Flask, Response, current_app
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from werkzeug.middleware.proxy_fix import ProxyFix

from service.client_address import client_key
from service.errors import error_response
from service.redis.keys import RATE_LIMIT_PREFIX
from service.settings import ConfigError, int_setting

log = logging.getLogger(__name__)

EXTENSION = "recs_limiter"
OFF = "off"
DEFAULTS: dict[str, Any] = {
    # A reader's page view sends one event and a click another: 120 a minute is far above
    # any reader and far below a flood.
    "EVENTS_RATE_LIMIT": "120/minute",
    # Each box asks once per page view; a busy reader opens a few pages a minute.
    "RECOMMENDATIONS_RATE_LIMIT": "300/minute",
    "TRUSTED_PROXIES": 0,  # hops of X-Forwarded-For to trust (0: none, use the TCP peer)
}
LIMITED = {
    "foryou.events": "EVENTS_RATE_LIMIT",
    "foryou.recommendations": "RECOMMENDATIONS_RATE_LIMIT",
}


def _limit(config: Mapping[str, Any], name: str) -> str | None:
    """The limit string of ``name`` (``None``: off); ConfigError when it does not parse."""
    value = config[name]
    if isinstance(value, str) and value.strip().lower() == OFF:
        return None
    try:
        if not isinstance(value, str) or not parse_many(value):
            raise ValueError(value)
    except ValueError:
        raise ConfigError(
            f"{name} (env RECS_{name}) must be a rate such as 120/minute, or off"
        ) from None
    return value


def init_app(app: Flask) -> None:
    """Wrap the app in ProxyFix (if trusted proxies are set) and limit the public POST routes.

    Call after the routes are registered.
    """
    for name, value in DEFAULTS.items():
        app.config.setdefault(name, value)
    hops = int_setting(app.config, "TRUSTED_PROXIES", 0, 10)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]
    limits = {endpoint: _limit(app.config, name) for endpoint, name in LIMITED.items()}
    redis_url = app.config.get("REDIS_URL")
    timeout = float(app.config.get("REDIS_TIMEOUT", 0.5))
    # Typed str | int by Flask-Limiter, passed on to redis-py, which takes float seconds.
    storage_options: dict[str, Any] = (
        {"socket_timeout": timeout, "socket_connect_timeout": timeout} if redis_url else {}
    )
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=str(redis_url) if redis_url else "memory://",
        storage_options=storage_options,
        strategy="sliding-window-counter",
        key_prefix=RATE_LIMIT_PREFIX,
        # Its headers would also stamp its own Retry-After on our 503s; the 429 gets one below.
        headers_enabled=False,
        # A Redis outage must not turn every limited route into a 500: counts fall back to
        # the process's memory until Redis answers again.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        default_limits=[],
    )
    for endpoint, limit in limits.items():
        view: Any = app.view_functions[endpoint]
        if limit is None:
            app.view_functions[endpoint] = limiter.exempt(view)
        else:
            app.view_functions[endpoint] = limiter.limit(limit)(view)
    _scope_hooks(app, limiter, {endpoint.split(".")[0] for endpoint in LIMITED})
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many_requests)


def _scope_hooks(app: Flask, limiter: Limiter, blueprints: set[str]) -> None:
    """Run the limiter's request hooks for the limited routes' blueprints only.

    Flask-Limiter hooks every request of the app; on ``/related``, which has no limit, that
    costs ~80 us of a ~280 us request (in-process, Reuters sample). Moving its hooks to the
    blueprints that hold limited routes keeps the rest of the app at its old speed.
    """

    def owned(hook: Any) -> bool:
        if isinstance(hook, partial):
            return any(arg is limiter for arg in hook.args)
        return getattr(hook, "__self__", None) is limiter

    for registry in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        hooks: list[Any] = registry.get(None, [])
        moved = [hook for hook in hooks if owned(hook)]
        if not moved:
            raise RuntimeError("Flask-Limiter's request hooks were not found on the app")
        for hook in moved:
            hooks.remove(hook)
            for blueprint in sorted(blueprints):
                registry.setdefault(blueprint, []).append(hook)


def _too_many_requests(exc: RateLimitExceeded) -> Response:
    current = limiter().current_limit
    wait = 1
    if current is not None:
        # Seconds until the window lets this client in again (at least 1).
        wait = max(1, math.ceil(current.reset_at - time.time()))
    response = error_response(
        429,
        "too_many_requests",
        f"rate limit exceeded for this client address ({exc.limit.limit}); retry in {wait} s",
    )
    response.headers["Retry-After"] = str(wait)
    return response


def limiter() -> Limiter:
    """The current app's limiter."""
    value: Limiter = current_app.extensions[EXTENSION]
    return value
