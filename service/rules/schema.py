"""What a rule may say: the JSON Schema in service/openapi.json, and what a schema cannot say.

The one source of truth is ``components.schemas.RuleBody`` of the packaged OpenAPI document
(``GET /openapi.json`` publishes it); :func:`validate_rule` checks a body against it with the
``jsonschema`` library, then checks what a schema cannot express: times that parse as ISO 8601
with an offset, ``valid_from`` before ``valid_until``, pin positions below ``RECS_MAX_K``, an id
pinned once. Every failure is a :class:`RuleError` naming the field by its JSON pointer.

jsonschema is imported on the first validation only: a worker that serves ``/related`` never
validates a rule and never loads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from models.records import ID_PATTERN

# Fields of a stored rule the server writes; a rules file or an export may carry them.
SERVER_FIELDS = ("id", "updated_at", "updated_by")
TIME_FIELDS = ("valid_from", "valid_until")
TIME_EXAMPLE = "2026-12-01T06:00:00Z"
# Rules a set may hold. Each rule is bounded by the schema, and every worker reads and
# compiles the whole set after each change: a newsroom needs hundreds, a runaway script
# must not fill Redis and every worker's memory.
MAX_RULES = 10_000
# Who may be named as the editor of a change (X-Recs-Editor, --by): printable, bounded.
EDITOR_MAX = 64


class RuleError(ValueError):
    """A rule that is not valid: ``pointer`` is the JSON pointer of the field (``""``: the
    whole rule), ``reason`` says what is wrong with it."""

    def __init__(self, pointer: str, reason: str) -> None:
        self.pointer = pointer
        self.reason = reason
        super().__init__(f"{pointer or 'body'}: {reason}")


@lru_cache(maxsize=1)
def components() -> dict[str, Any]:
    """The OpenAPI document's components (schemas referring to each other resolve in them)."""
    spec = json.loads(resources.files("service").joinpath("openapi.json").read_bytes())
    found: dict[str, Any] = spec["components"]
    return found


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema  # lazily: see the module docstring

    schema = {"$ref": "#/components/schemas/RuleBody", "components": components()}
    return jsonschema.Draft202012Validator(schema)


def pointer(path: Sequence[Any]) -> str:
    """A JSON pointer (RFC 6901) of a path of keys and indexes."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "number": "a number",
}


def _reason(error: Any) -> tuple[list[Any], str]:
    """The path and a short reason of a jsonschema error (its message may quote a whole list)."""
    path, kind, limit = list(error.absolute_path), error.validator, error.validator_value
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(name) for name in error.instance if name not in allowed)
        return [*path, extra[0]], "unknown field"
    if kind == "required" and isinstance(error.instance, dict):
        missing = [name for name in limit if name not in error.instance]
        return [*path, missing[0]], "required"
    if kind == "type":
        wanted = [limit] if isinstance(limit, str) else list(limit)
        return path, "must be " + " or ".join(_TYPES.get(t, t) for t in wanted)
    if kind == "pattern":
        if limit.strip("^$") == ID_PATTERN.pattern:
            return path, "must be an id: 1-128 of A-Z a-z 0-9 . _ : -"
        return path, f"must match {limit}"
    reasons = {
        "minLength": f"must be at least {limit} character{'s' * (limit != 1)}",
        "maxLength": f"must be at most {limit} characters",
        "minItems": f"must have at least {limit} item{'s' * (limit != 1)}",
        "maxItems": f"must have at most {limit} items",
        "minimum": f"must be at least {limit}",
        "maximum": f"must be at most {limit}",
        "maxProperties": f"must have at most {limit} field{'s' * (limit != 1)}",
        "format": f"must be an ISO 8601 date-time with an offset, e.g. {TIME_EXAMPLE}",
    }
    return path, reasons.get(kind, str(error.message)[:200])


def parse_time(value: str) -> datetime:
    """An ISO 8601 time with an offset or ``Z``, in UTC (ValueError for a naive, malformed or
    out-of-range one). The validator and the engine (service/rules/compiled.py) both read
    times with it, so a rule accepted is a rule in force."""
    # RFC 3339 allows a lower-case "t" and "z"; fromisoformat only takes upper case.
    parsed = datetime.fromisoformat(value.upper())
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("naive time")
    try:
        # In UTC here: one an offset moves past year 1 or 9999 has no instant, and the engine
        # compiling it later would fail on every request.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range in UTC") from None


def validate_rule(body: Any, *, max_k: int | None = None) -> dict[str, Any]:
    """``body`` if it is a valid rule body, else :class:`RuleError` naming the first bad field.

    ``max_k``: the server's ``RECS_MAX_K``; pins must sit at a position a list can have.
    """
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(body))
    if error is not None:
        path, reason = _reason(error)
        raise RuleError(pointer(path), reason)
    times = {}
    for name in TIME_FIELDS:
        if name in body:
            try:
                times[name] = parse_time(body[name])
            except ValueError:
                raise RuleError(
                    f"/{name}", f"must be an ISO 8601 date-time with an offset, e.g. {TIME_EXAMPLE}"
                ) from None
    if len(times) == 2 and not times["valid_from"] < times["valid_until"]:
        raise RuleError("/valid_until", "must be after valid_from")
    seen: set[str] = set()
    for index, pin in enumerate(body.get("pin", ())):
        if pin["id"] in seen:
            raise RuleError(f"/pin/{index}/id", f"{pin['id']!r} is pinned twice")
        seen.add(pin["id"])
        if max_k is not None and pin["position"] >= max_k:
            raise RuleError(
                f"/pin/{index}/position", f"must be below RECS_MAX_K ({max_k}): lists are no longer"
            )
    return dict(body)


def too_many_rules() -> RuleError:
    """The error of a new rule that would take the set beyond :data:`MAX_RULES`."""
    return RuleError("", f"the rule set is full ({MAX_RULES} rules): delete one first")


def check_rule_id(rule_id: Any) -> str:
    """``rule_id`` if it is a valid rule id (ValueError otherwise)."""
    if not isinstance(rule_id, str) or not ID_PATTERN.fullmatch(rule_id):
        raise ValueError("must be an id: 1-128 of A-Z a-z 0-9 . _ : -")
    return rule_id


def check_editor(value: str) -> str:
    """Who made a change, as stored in the log: printable text, at most :data:`EDITOR_MAX`."""
    cleaned = value.strip()
    if (
        not cleaned
        or len(cleaned) > EDITOR_MAX
        or not (cleaned.isascii() and cleaned.isprintable())
    ):
        raise ValueError(f"must be 1-{EDITOR_MAX} printable ASCII characters")
    return cleaned


def validate_document(document: Any, *, max_k: int | None = None) -> dict[str, dict[str, Any]]:
    """A rules file or export, ``{"rules": {ID: rule, ...}}`` (``"seq"`` may be present and
    is ignored), as rule id -> validated body. A rule may carry the server fields; an ``id``
    must equal its key. Errors name the rule by pointer: ``/rules/ID/field``."""
    if not isinstance(document, dict):
        raise RuleError("", 'must be a JSON object: {"rules": {"RULE_ID": {...}, ...}}')
    unknown = sorted(set(document) - {"rules", "seq"})
    if unknown:
        raise RuleError(pointer([unknown[0]]), "unknown field (expected rules, seq)")
    rules = document.get("rules")
    if not isinstance(rules, dict):
        raise RuleError("/rules", "required: an object of rule id -> rule")
    if len(rules) > MAX_RULES:
        raise RuleError("/rules", f"at most {MAX_RULES} rules, got {len(rules)}")
    out: dict[str, dict[str, Any]] = {}
    for rule_id, rule in rules.items():
        where = ["rules", rule_id]
        try:
            check_rule_id(rule_id)
        except ValueError as exc:
            raise RuleError(pointer(where), f"rule id {str(exc)}") from None
        if isinstance(rule, dict) and rule.get("id", rule_id) != rule_id:
            raise RuleError(pointer([*where, "id"]), "must equal the rule's key")
        body = strip_server_fields(rule) if isinstance(rule, dict) else rule
        try:
            out[rule_id] = validate_rule(body, max_k=max_k)
        except RuleError as exc:
            raise RuleError(pointer(where) + exc.pointer, exc.reason) from None
    return out


def strip_server_fields(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule without the fields the server writes: the body an editor gives."""
    return {name: value for name, value in rule.items() if name not in SERVER_FIELDS}


def stored_rule(rule_id: str, body: Mapping[str, Any], *, by: str, at: str) -> dict[str, Any]:
    """The stored form of a validated body: the id first, the body, then who and when."""
    return {"id": rule_id, **strip_server_fields(body), "updated_at": at, "updated_by": by}


def utc_stamp(moment: datetime) -> str:
    """``moment`` as stored rules and log entries write times: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rule_state(rule: Mapping[str, Any], now: datetime) -> str:
    """``scheduled`` before ``valid_from``, ``expired`` from ``valid_until`` on, else
    ``active`` (windows to the second; a time that does not parse counts as absent)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    for name, state in (("valid_from", "scheduled"), ("valid_until", "expired")):
        raw = rule.get(name)
        if not isinstance(raw, str):
            continue
        try:
            moment = parse_time(raw)
        except ValueError:
            continue
        if (name == "valid_from" and now < moment) or (name == "valid_until" and now >= moment):
            return state
    return "active"
