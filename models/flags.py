"""Editorial flags of an article record (docs/editorial.md): parsed and checked here, carried by
:class:`models.records.Article` and stored with the metadata the API serves.

``no_recommend`` and ``sponsored`` are yes/no; ``embargo_until`` and ``expires_at`` are ISO 8601
times that must carry an offset (``Z`` or ``+01:00``): an editorial deadline must not depend on
which zone a server takes a naive time to be in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from models.times import parse_time

FLAG_FIELDS = ("no_recommend", "sponsored")
WINDOW_FIELDS = ("embargo_until", "expires_at")
FIELDS = FLAG_FIELDS + WINDOW_FIELDS
# Yes/no cells of a CSV export (every cell is a string there; JSON records use true/false).
_CELL_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "": False}
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class FlagError(ValueError):
    """A bad flag value: which field and why (the record reader adds file and line)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def parse_flags(data: Mapping[str, Any]) -> dict[str, Any]:
    """The flags of one decoded record: two bools and two UTC times (``None`` when unset)."""
    out: dict[str, Any] = {}
    for name in FLAG_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value.strip().lower() in _CELL_BOOLEANS:
            value = _CELL_BOOLEANS[value.strip().lower()]
        if value is not None and not isinstance(value, bool):
            raise FlagError(name, f"must be true or false, got {_type_name(value)}")
        out[name] = bool(value)
    for name in WINDOW_FIELDS:
        value = data.get(name)
        out[name] = None if value in (None, "") else parse_time_with_offset(value, name)
    return out


def parse_time_with_offset(value: Any, name: str) -> str:
    """An ISO-8601 time with an offset as UTC ``YYYY-MM-DDTHH:MM:SSZ`` (to the second)."""
    if not isinstance(value, str):
        raise FlagError(name, f"must be an ISO-8601 string with an offset, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FlagError(name, f"{value[:40]!r} is not an ISO-8601 date/time") from None
    if parsed.tzinfo is None:
        raise FlagError(name, f"{value[:40]!r} has no UTC offset (add Z or +HH:MM)")
    try:
        return parsed.astimezone(UTC).strftime(_FORMAT)
    except (OverflowError, ValueError):
        raise FlagError(name, f"{value[:40]!r} is out of range in UTC") from None


def flag_timestamp(value: str | None) -> float | None:
    """Epoch seconds of a stored flag time (``None`` when unset or unparseable)."""
    parsed = parse_time(value)
    return None if parsed is None else parsed.timestamp()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
