"""``/v1/rules``: editorial rules managed over HTTP (admin only, Bearer ``RECS_ADMIN_TOKEN``).

Reads (list, one rule, history) go to the store directly, never through the per-process cache
the request path uses, so an editor sees a change the moment it is stored. Writes need Redis:
a server running from a model directory reads its rules from ``RECS_RULES_FILE`` and answers
501. ``updated_by`` is the ``X-Recs-Editor`` header when given, else ``api``. See
docs/editorial.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from service import bodies
from service.admin_http import no_store, path_id
from service.auth import admin_required
from service.errors import BadRequest, NotFound
from service.rules.schema import (
    RuleError,
    check_editor,
    rule_state,
    stored_rule,
    utc_stamp,
    validate_rule,
)
from service.store.base import Store
from service.store_ext import get_store

bp = Blueprint("rules_admin", __name__)

EDITOR_HEADER = "X-Recs-Editor"
DEFAULT_EDITOR = "api"
HISTORY_DEFAULT = 20
HISTORY_MAX = 500
# Pin ids looked up per store call when listing rules.
LOOKUP_CHUNK = 1000


def _editor() -> str:
    raw = request.headers.get(EDITOR_HEADER)
    if raw is None:
        return DEFAULT_EDITOR
    try:
        return check_editor(raw)
    except ValueError as exc:
        raise BadRequest(f"{EDITOR_HEADER}: {exc}", parameter=EDITOR_HEADER) from None


def _now() -> datetime:
    now: datetime = current_app.config["CLOCK"]()
    return now


def _unknown_pins(store: Store, rules: Iterable[Mapping[str, Any]]) -> tuple[set[str], str]:
    """Pinned ids the live version does not hold, and the reason to give for them."""
    wanted = sorted({pin["id"] for rule in rules for pin in rule.get("pin", ())})
    if not wanted:
        return set(), ""
    info = store.current_version()
    if info is None:
        return set(wanted), "no model version is published"
    unknown: set[str] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        metas = store.articles(info.version, chunk)
        unknown |= {article_id for article_id, meta in zip(chunk, metas, strict=True) if not meta}
    return unknown, "not in the live model"


def _described(store: Store, rules: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rules with their validity state now and the pins the engine skips."""
    now = _now()
    unknown, reason = _unknown_pins(store, rules)
    out = []
    for rule in rules:
        skipped = [
            {"id": pin["id"], "reason": reason}
            for pin in rule.get("pin", ())
            if pin["id"] in unknown
        ]
        out.append({**rule, "state": rule_state(rule, now), "skipped_pins": skipped})
    return out


# ------------------------------------------------------------------------------- routes
@bp.get("/v1/rules")
@admin_required
def list_rules() -> Response:
    """Every rule, by id, with its state (Bearer RECS_ADMIN_TOKEN; 404 when none is set)."""
    store = get_store()
    found = store.stored_rules()
    rules = [found.rules[rule_id] for rule_id in sorted(found.rules)]
    return no_store({"seq": found.seq, "rules": _described(store, rules)})


@bp.get("/v1/rules/<rule_id>")
@admin_required
def get_rule(rule_id: str) -> Response:
    """One rule with its state."""
    path_id(rule_id, "rule_id")
    store = get_store()
    rule = store.stored_rules().rules.get(rule_id)
    if rule is None:
        raise NotFound(f"no rule {rule_id!r}", parameter="rule_id")
    return no_store(_described(store, [rule])[0])


@bp.put("/v1/rules/<rule_id>")
@admin_required
def put_rule(rule_id: str) -> Response:
    """Create (201) or replace (200) a rule; the answer is the stored rule."""
    path_id(rule_id, "rule_id")
    editor = _editor()
    body = bodies.json_object(None)
    try:
        valid = validate_rule(body, max_k=int(current_app.config["MAX_K"]))
    except RuleError as exc:
        raise BadRequest(str(exc), parameter=exc.pointer or "body") from None
    rule = stored_rule(rule_id, valid, by=editor, at=utc_stamp(_now()))
    try:
        change = get_store().put_rule(rule)
    except RuleError as exc:  # the rule set is full
        raise BadRequest(str(exc.reason), parameter="rule_id") from None
    return no_store(rule, 201 if change.before is None else 200)


@bp.delete("/v1/rules/<rule_id>")
@admin_required
def delete_rule(rule_id: str) -> Response:
    """Delete a rule (204; 404 when there is none)."""
    path_id(rule_id, "rule_id")
    editor = _editor()
    store = get_store()
    change = store.delete_rule(rule_id, by=editor, at=utc_stamp(_now()))
    if change is None:
        raise NotFound(f"no rule {rule_id!r}", parameter="rule_id")
    return no_store(status=204)


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return HISTORY_DEFAULT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= HISTORY_MAX):
        raise BadRequest(f"limit: must be an integer from 1 to {HISTORY_MAX}", parameter="limit")
    return int(raw)


@bp.get("/v1/rules/<rule_id>/history")
@admin_required
def rule_history(rule_id: str) -> Response:
    """A rule's logged changes, newest first (a deleted rule's too)."""
    path_id(rule_id, "rule_id")
    limit = _limit()
    store = get_store()
    entries = store.rule_history(rule_id, limit)
    if not entries and rule_id not in store.stored_rules().rules:
        raise NotFound(f"no rule {rule_id!r} and no history of one", parameter="rule_id")
    return no_store({"id": rule_id, "entries": entries})


def init_app(app: Flask) -> None:
    """Register the routes."""
    app.register_blueprint(bp)
