"""``PUT`` / ``DELETE /v1/articles/<article_id>``: incremental updates over HTTP (admin only).

The API never changes a model itself. A route validates the request, appends it to the update
queue through the store (:mod:`service.redis.queue` in Redis) and waits up to ``?wait=``
seconds for the one writer (``recs worker``) to apply it: 200 with the result when it did,
202 when the update is still queued (the writer is busy, slow, or not running: it applies the
entry when it gets to it).
Updates need Redis; a server running from a model directory answers 501 and points to
``recs upsert --model DIR``. See docs/incremental.md.

This module also reads the live version's drift for ``/readyz`` (:func:`live_drift`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from models.records import RecordError, article_from_mapping
from service import bodies
from service.admin_http import no_store, path_id
from service.auth import admin_required
from service.errors import BadRequest, NotFound
from service.store.base import Store
from service.store_ext import get_store

log = logging.getLogger(__name__)

bp = Blueprint("articles_admin", __name__)

# Seconds a request waits for the writer by default: an upsert is applied in milliseconds, so
# this only runs out when the writer is busy or down (then the answer is 202, queued).
DEFAULT_WAIT = 2.0
# Longer waits hold a server worker; a caller that needs more polls /related instead.
MAX_WAIT = 30.0


def live_drift(store: Store, version: str) -> dict[str, Any] | None:
    """Drift of ``version`` (``None`` where no updates are applied: a model directory)."""
    return store.drift(version, float(current_app.config["RETRAIN_DRIFT"]))


# ------------------------------------------------------------------------------- requests
def _wait() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_WAIT:  # NaN fails too
        raise BadRequest(f"wait: must be 0 to {MAX_WAIT:g} seconds", parameter="wait")
    return value


def _article(article_id: str) -> Any:
    """The body as a validated article whose id is the path's."""
    # Beyond MAX_CONTENT_LENGTH this raises werkzeug's 413 (a JSON error via service.errors).
    # An article may carry fields of its own (kept, never model input): allow some nesting.
    body = bodies.json_object(None, max_depth=32)
    given = body.get("id")
    if given not in (None, "") and given != article_id:
        raise BadRequest("id: must equal the article id in the path", parameter="id")
    try:
        return article_from_mapping({**body, "id": article_id}, source="body")
    except RecordError as exc:
        field = exc.field or "body"
        raise BadRequest(f"{field}: {exc.reason}", parameter=field) from None


def _apply(store: Store, op: str, article_id: str, entry: str, wait: float) -> Response:
    """Wait for the writer's result of ``entry`` and answer with it (202 while queued)."""
    # The entry is queued (the append answered): if Redis fails now, a retry of the request
    # would queue it again, which the writer applies idempotently.
    active = store.writer_running()
    result = store.update_result(entry, wait) if active else None
    if result is None:
        if active:
            message = f"queued; not applied within {wait:g} s, the writer applies it in order"
        else:
            log.warning(
                "%s of %s queued as %s, but no update writer is running (start `recs worker`)",
                op,
                article_id,
                entry,
            )
            message = "queued; no writer is running now, it is applied when `recs worker` starts"
        return no_store(
            {"status": "queued", "id": article_id, "entry": entry, "message": message}, 202
        )
    if result.get("status") != "applied":
        reason = str(result.get("error") or "rejected by the update writer")
        if op == "delete":
            raise NotFound(reason, parameter="article_id")
        raise BadRequest(reason, parameter="body")
    return no_store(
        {
            "status": "applied",
            "id": article_id,
            "entry": entry,
            "changed": int(result.get("changed") or 0),
            "model_version": result.get("version"),
        },
        200,
    )


# ------------------------------------------------------------------------------- routes
@bp.put("/v1/articles/<article_id>")
@admin_required
def put_article(article_id: str) -> Response:
    """Add or replace an article (Bearer RECS_ADMIN_TOKEN; 404 when none is set)."""
    path_id(article_id, "article_id")
    store = get_store()
    wait = _wait()
    article = _article(article_id)
    entry = store.enqueue_update("upsert", article_id, article, by="api")
    return _apply(store, "upsert", article_id, entry, wait)


@bp.delete("/v1/articles/<article_id>")
@admin_required
def delete_article(article_id: str) -> Response:
    """Remove an article from every list (Bearer RECS_ADMIN_TOKEN; 404 when none is set)."""
    path_id(article_id, "article_id")
    store = get_store()
    wait = _wait()
    entry = store.enqueue_update("delete", article_id, None, by="api")
    return _apply(store, "delete", article_id, entry, wait)


def init_app(app: Flask) -> None:
    """Register the routes."""
    app.register_blueprint(bp)
