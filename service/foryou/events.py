"""``POST /v1/events`` (views and clicks) and ``DELETE /v1/users/<id>`` (erasure).

An event must name an article of the live version (404 otherwise, nothing stored). It counts
for trending once per reader and article in the window, the reader being the signed user or,
without a token, the client address (an IPv6 client's /64); a signed reader's event also goes
to their history. The store does the check and the write in one step (service/redis/events.py,
or in memory).
"""

from __future__ import annotations

from flask import Response, request

from service.auth import admin_required
from service.client_address import network_key
from service.errors import NotFound
from service.foryou.parsing import check_id, event, now
from service.foryou.routes import json_response, live
from service.foryou.settings import bp, state
from service.store.base import UNKNOWN_ARTICLE, Reader
from service.store_ext import get_store


@bp.post("/v1/events")
def events() -> Response:
    """Record a view or click for trending, and in a signed reader's history."""
    shared = state()
    given = event()
    store = get_store()
    info = live(store)
    reader: Reader | None = None
    if given.user_id is not None:
        reader = Reader("u", given.user_id)
    elif (address := network_key(request.remote_addr)) is not None:
        reader = Reader("a", address)
    outcome = store.record_event(
        info.version, given.article_id, reader, now().timestamp(), shared.history
    )
    if outcome == UNKNOWN_ARTICLE:
        raise NotFound(
            f"article_id: {given.article_id!r} is not in the live model version; nothing was"
            " recorded",
            parameter="article_id",
        )
    shared.events.labels(given.type, given.source or "none").inc()
    return json_response({"status": "accepted"}, 202)


@bp.delete("/v1/users/<user_id>")
@admin_required
def delete_user(user_id: str) -> Response:
    """Erase what is stored of a reader (Bearer RECS_ADMIN_TOKEN; 404 when none is set)."""
    check_id(user_id, "user_id", "user id")
    get_store().erase_reader(user_id)
    response = Response(status=204)
    response.headers["Cache-Control"] = "no-store"
    return response
