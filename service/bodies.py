"""Request bodies: one reader for every route that parses JSON, so each gets the same limits.

A body must say ``Content-Type: application/json``: a browser may send ``text/plain`` to any
origin without a CORS preflight, so accepting it would let any web page make its visitors post
events. Bodies are bounded in bytes and in nesting depth (Python's JSON parser recurses, and a
body of 5,000 brackets would otherwise end in a RecursionError, a 500); numbers too long for
``int()`` are a 400 as well.
"""

from __future__ import annotations

from typing import Any

from flask import request

from models import jsonsafe
from service.errors import ApiError, BadRequest

JSON_MIMETYPE = "application/json"
# Our bodies are flat objects of strings and lists of ids: 8 levels is plenty, and small
# enough that nothing downstream can recurse into trouble.
MAX_DEPTH = 8


class PayloadTooLarge(ApiError):
    """A request body over the route's limit."""

    status = 413
    error = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """A body that is not ``application/json``."""

    status = 415
    error = "unsupported_media_type"


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_json(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` as JSON, or :class:`BadRequest` naming what is wrong with it."""
    try:
        return jsonsafe.loads(data, max_depth=max_depth)
    except jsonsafe.JSONInputError as exc:
        raise BadRequest(f"body: {exc.reason}", parameter="body") from None


def json_object(
    limit: int | None, allowed: set[str] | None = None, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """The request's JSON object: content type, size, depth and (if given) field names checked.

    ``limit`` is in bytes; beyond it the answer is a 413 without reading the rest (``None``:
    the app's ``MAX_CONTENT_LENGTH``, werkzeug's own 413).
    """
    if request.mimetype != JSON_MIMETYPE:
        raise UnsupportedMediaType(
            f"Content-Type: must be {JSON_MIMETYPE}, got {request.mimetype or 'none'}",
            parameter="Content-Type",
        )
    if limit is None:
        return _checked(parse_json(request.get_data(cache=False), max_depth), allowed)
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body: {length} bytes, at most {limit}", parameter="body")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"body: more than {limit} bytes", parameter="body")
    return _checked(parse_json(data, max_depth), allowed)


def _checked(body: Any, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"body: must be a JSON object, got {_type(body)}", parameter="body")
    if allowed is not None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadRequest(f"{unknown[0]}: unknown field", parameter=unknown[0])
    return body
