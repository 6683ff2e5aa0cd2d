"""API errors and their one JSON shape: ``{"error", "message"[, "parameter"]}``."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from service.store.base import UpdatesUnsupported

log = logging.getLogger(__name__)

# Short, stable messages for routing errors: werkzeug's descriptions are long HTML-ish prose.
_HTTP_MESSAGES = {
    400: "bad request",
    404: "no such endpoint",
    405: "method not allowed",
    413: "request too large",
    414: "request URI too long",
    431: "request header fields too large",
}


class ApiError(Exception):
    """Base of the errors the API answers on purpose."""

    status = 500
    error = "internal"

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


class BadRequest(ApiError):
    """A bad query parameter; ``parameter`` names it."""

    status = 400
    error = "bad_request"


class NotFound(ApiError):
    """An unknown resource, e.g. an article id not in the live model."""

    status = 404
    error = "not_found"


class Unauthorized(ApiError):
    """A reader identity the site did not sign (a bare id, a forged or expired token)."""

    status = 401
    error = "unauthorized"


class NotImplementedHere(ApiError):
    """A feature this deployment does not offer (server-side history without a signing key,
    updates sent to a server that runs from a model directory)."""

    status = 501
    error = "not_implemented"


def error_response(
    status: int, error: str, message: str, *, parameter: str | None = None
) -> Response:
    """A JSON error response; errors are never cached by shared caches."""
    body: dict[str, Any] = {"error": error, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    response = Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    if status == 503:
        response.headers["Retry-After"] = str(current_app.config["RETRY_AFTER"])
    return response


def _handle_api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.error, exc.message, parameter=exc.parameter)


def _handle_http_exception(exc: HTTPException) -> Response:
    code = exc.code or 500
    if code >= 500:
        return _handle_unexpected(exc)
    name = (exc.name or "error").lower().replace(" ", "_")
    response = error_response(code, name, _HTTP_MESSAGES.get(code, name.replace("_", " ")))
    # Keep protocol headers such as Allow (405); the body's Content-Type is ours.
    for key, value in exc.get_headers():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def _handle_unexpected(exc: Exception) -> Response:
    # Details go to the server log only: exception text can leak internals to clients.
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error")


def _handle_updates_unsupported(exc: UpdatesUnsupported) -> Response:
    # One place for every write a store cannot take (updates or rules on a model directory).
    return _handle_api_error(NotImplementedHere(str(exc)))


def init_app(app: Flask) -> None:
    """Register the JSON error handlers on ``app`` (StoreUnavailable: service.resilience)."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(UpdatesUnsupported, _handle_updates_unsupported)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
