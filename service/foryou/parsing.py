""" "For you" requests: validated queries, bodies and reader tokens (no data access here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, request

from models.records import ID_PATTERN
from service import bodies, tokens
from service.errors import BadRequest, NotImplementedHere, Unauthorized
from service.foryou.settings import state

MAX_EXCLUDE = 100
MAX_SECTION_LENGTH = 200
EVENT_TYPES = ("view", "click")
EVENT_SOURCES = ("history", "trending", "latest", "related", "other")
MAX_POSITION = 1000
RECOMMEND_FIELDS = {"history", "user_token", "k", "exclude", "section"}
EVENT_FIELDS = {"user_token", "article_id", "type", "position", "source"}
# Identities never travel in URLs (access logs, Referer headers, browser history).
URL_IDENTITY_PARAMETERS = ("user_token", "user_id")


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    """A validated recommendation request."""

    history: list[str] | None  # None: not given (use the stored one when a reader is given)
    user_id: str | None  # from a verified token only
    k: int
    exclude: frozenset[str]
    section: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event."""

    article_id: str
    type: str
    source: str | None
    user_id: str | None  # from a verified token only


def now() -> datetime:
    """The app clock's now, aware UTC."""
    value: datetime = current_app.config["CLOCK"]()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_id(value: Any, field: str, what: str = "article id") -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string, got {_type(value)}", parameter=field)
    if not ID_PATTERN.fullmatch(value):
        raise BadRequest(
            f"{field}: {value[:40]!r} is not a valid {what} (1-128 of A-Z a-z 0-9 . _ : -)",
            parameter=field,
        )
    return value


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _id_list(values: Any, field: str, limit: int | None) -> list[str]:
    if not isinstance(values, list):
        raise BadRequest(f"{field}: must be a list of ids, got {_type(values)}", parameter=field)
    if limit is not None and len(values) > limit:
        raise BadRequest(f"{field}: at most {limit} ids", parameter=field)
    return [check_id(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _split(values: Iterable[str]) -> list[str]:
    # Spaces only, as the spec's item pattern: a tab or newline is not an id.
    return [item.strip(" ") for value in values for item in value.split(",") if item.strip(" ")]


def _k(value: Any) -> int:
    high = current_app.config["MAX_K"]
    if value is None:
        return int(current_app.config["DEFAULT_K"])
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's "integer" includes 12.0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise BadRequest(
            f"k must be a whole number from 1 to {high}, got {value!r:.20}", parameter="k"
        )
    return value


def _section(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"section: must be a string, got {_type(value)}", parameter="section")
    value = value.strip()
    if len(value) > MAX_SECTION_LENGTH:
        raise BadRequest(
            f"section must be at most {MAX_SECTION_LENGTH} characters", parameter="section"
        )
    return value.casefold() or None


def json_body(allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (Content-Type application/json), size- and depth-checked; a
    bare ``user_id`` is refused as an identity the site did not sign."""
    body = bodies.json_object(state().max_body, allowed | {"user_id"})
    if "user_id" in body:
        raise Unauthorized(
            "user_id: a bare reader id is not accepted; send user_token, signed by the site"
            " (docs/security.md)",
            parameter="user_id",
        )
    return body


def reader(token: Any) -> str | None:
    """The user id of a ``user_token`` (``None`` when absent); 400/401/501 when refused."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise BadRequest(
            f"user_token: must be a string, got {_type(token)}", parameter="user_token"
        )
    key = state().signing_key
    if key is None:
        raise NotImplementedHere(
            "server-side reader history is off: set RECS_USER_SIGNING_KEY (and sign reader"
            " tokens on the site, docs/security.md) to turn it on, or send the history with"
            " each request",
            parameter="user_token",
        )
    try:
        return tokens.verify(key, token, now().timestamp()).user_id
    except tokens.TokenError as exc:
        if exc.malformed:
            raise BadRequest(f"user_token: {exc}", parameter="user_token") from None
        raise Unauthorized(f"user_token: {exc}", parameter="user_token") from None


def no_identity_in_url() -> None:
    """400 for a reader identity in the query string, whatever the method."""
    for name in URL_IDENTITY_PARAMETERS:
        if name in request.args:
            raise BadRequest(
                f"{name}: reader identities are never accepted in a URL (they would reach"
                " access logs); POST a JSON body with user_token",
                parameter=name,
            )


def recommend_query() -> RecommendQuery:
    """The request's validated query (GET parameters or a JSON body)."""
    no_identity_in_url()
    if request.method == "POST":
        body = json_body(RECOMMEND_FIELDS)
        raw_history = body.get("history")
        history = None if raw_history is None else _id_list(raw_history, "history", None)
        exclude = _id_list(body.get("exclude", []), "exclude", MAX_EXCLUDE)
        k, section = body.get("k"), body.get("section")
        token = body.get("user_token")
    else:
        args = request.args
        history = None
        if "history" in args:
            history = [check_id(v, "history") for v in _split(args.getlist("history"))]
        exclude = [check_id(v, "exclude") for v in _split(args.getlist("exclude"))]
        # Empty items count too, as the spec's maxItems does.
        given = sum(value.count(",") + 1 for value in args.getlist("exclude"))
        if max(len(exclude), given) > MAX_EXCLUDE:
            raise BadRequest(f"exclude: at most {MAX_EXCLUDE} ids", parameter="exclude")
        k, section = args.get("k"), args.get("section")
        token = None
    # Validated before the token: a malformed query is a 400 whoever sends it.
    k, exclude_ids, section = _k(k), frozenset(exclude), _section(section)
    return RecommendQuery(
        history=history,
        user_id=reader(token),
        k=k,
        exclude=exclude_ids,
        section=section,
    )


def event() -> Event:
    """The request's validated event (a JSON body)."""
    no_identity_in_url()
    body = json_body(EVENT_FIELDS)
    if "article_id" not in body:
        raise BadRequest("article_id: is required", parameter="article_id")
    article_id = check_id(body["article_id"], "article_id")
    kind = body.get("type", "view")
    if kind not in EVENT_TYPES:
        raise BadRequest(f"type: must be one of {', '.join(EVENT_TYPES)}", parameter="type")
    position(body.get("position"))
    source = body.get("source")
    if source is not None and source not in EVENT_SOURCES:
        raise BadRequest(f"source: must be one of {', '.join(EVENT_SOURCES)}", parameter="source")
    return Event(article_id, kind, source, reader(body.get("user_token")))


def position(value: Any) -> int | None:
    """A widget slot: a whole number from 0 to MAX_POSITION, or ``None``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POSITION
    ):
        raise BadRequest(
            f"position: must be a whole number from 0 to {MAX_POSITION}", parameter="position"
        )
    return value
