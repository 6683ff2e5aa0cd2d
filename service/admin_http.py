"""What the admin routes (``/v1/articles/<id>`` writes, ``/v1/rules``) share: ids in the path
and their JSON answers, never stored by a cache."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

from models.records import ID_PATTERN
from service.errors import BadRequest


def path_id(value: str, parameter: str) -> str:
    """``value`` when it is a valid id; else a 400 naming ``parameter``."""
    if not ID_PATTERN.fullmatch(value):
        what = parameter.replace("_", " ")
        raise BadRequest(
            f"{parameter}: {value[:40]!r} is not a valid {what} (1-128 of A-Z a-z 0-9 . _ : -)",
            parameter=parameter,
        )
    return value


def no_store(body: Any = None, status: int = 200) -> Response:
    """``body`` as compact JSON (no body when ``None``), with ``Cache-Control: no-store``:
    an admin answer is the state of one moment and may name unpublished data."""
    if body is None:
        response = Response(status=status)
    else:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        response = Response(data, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
