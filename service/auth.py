"""The admin surface: routes that change stored data need a Bearer ``RECS_ADMIN_TOKEN``.

Decorate a view with :func:`admin_required`. With no token configured the route answers 404
exactly like an unknown URL (disabled, not open, and nothing for a scanner to learn); with a
token configured, a missing or wrong one gets 401 with ``WWW-Authenticate``. Tokens are
compared in constant time. Read endpoints stay public and never use this.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, request

from service.errors import error_response
from service.settings import ConfigError

log = logging.getLogger(__name__)

EXTENSION = "recs_admin_token"
CONFIG = "ADMIN_TOKEN"
# Long enough that guessing over HTTP is hopeless (e.g. ``openssl rand -hex 16``).
MIN_TOKEN_LENGTH = 16
REALM = 'Bearer realm="related-stories"'
# Marks decorated views, so a test can check every writing route is protected.
MARKER = "recs_admin_required"

F = TypeVar("F", bound=Callable[..., Any])


def secret_setting(config: Mapping[str, Any], name: str, min_length: int) -> str | None:
    """A secret from the config (``None`` when unset); ConfigError if it is not a long string.

    create_app reads ``RECS_<name>`` from the environment as the raw string: Flask's
    from_prefixed_env would parse it as JSON, turning ``1234567890123456e1`` into a float.
    """
    value = config.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} (env RECS_{name}) must be a string")
    value = value.strip()
    if len(value) < min_length:
        raise ConfigError(f"{name} (env RECS_{name}) must be at least {min_length} characters")
    return value


def configured_token(config: Mapping[str, Any]) -> str | None:
    """The admin token from the config (``None``: admin routes disabled); ConfigError if weak."""
    return secret_setting(config, CONFIG, MIN_TOKEN_LENGTH)


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests: compare_digest alone would still leak the token's length.
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def check_bearer(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as a Bearer credential."""
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        # Still one comparison, so a missing header costs what a wrong token costs.
        hmac.compare_digest(_digest(""), _digest(token))
        return False
    return hmac.compare_digest(_digest(given.strip()), _digest(token))


def _token() -> str | None:
    if EXTENSION not in current_app.extensions:
        current_app.extensions[EXTENSION] = configured_token(current_app.config)
    token: str | None = current_app.extensions[EXTENSION]
    return token


def admin_required(view: F) -> F:
    """Let the request through only with the configured Bearer token (404 when none is set)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _token()
        if token is None:
            return error_response(404, "not_found", "no such endpoint")
        if not check_bearer(request.headers.get("Authorization"), token):
            log.warning("admin request refused: %s %s", request.method, request.path)
            response: Response = error_response(
                401, "unauthorized", "a valid Bearer admin token is required"
            )
            response.headers["WWW-Authenticate"] = REALM
            return response
        return view(*args, **kwargs)

    setattr(wrapper, MARKER, True)
    return cast(F, wrapper)


def init_app(app: Flask) -> None:
    """Read and check the token at start, so a weak one fails before the first request."""
    app.config.setdefault(CONFIG, None)
    app.extensions[EXTENSION] = configured_token(app.config)
