"""JSON bodies for the errors gunicorn answers itself, before the app sees the request.

gunicorn refuses a request line over ``limit_request_line`` (414), too many or too large header
fields (431) and malformed requests (400) with a small HTML page of its own. A widget or a
monitoring check that parses every answer as JSON would choke on it, so ``gunicorn.conf.py``
installs :func:`write_json_error` in its place: same status, same message, our error shape.
(A reverse proxy in front may still answer such requests with its own page first.)
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def error_body(status: int, reason: str, message: str) -> bytes:
    """The API's error shape: ``{"error", "message"}`` (``error`` is the reason, snake_case)."""
    error = _NOT_WORD.sub("_", reason.lower()).strip("_") or "error"
    text = message or reason
    # The message quotes the client's own bytes (a request line): cut it, never echo it all.
    if len(text) > 200:
        text = text[:200] + "..."
    return json.dumps({"error": error, "message": text}, separators=(",", ":")).encode()


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: the same answer with a JSON body."""
    from gunicorn import util

    body = error_body(status_int, reason, mesg)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-store\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> Any:
    """Make gunicorn's own error answers JSON (call in the master, before workers fork)."""
    from gunicorn import util

    util.write_error = write_json_error
    return util
