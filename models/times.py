"""Stored times: one UTC format to the second, and cached parsing of ``published_at`` and
flag times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

# The one format of stored times (published dates, manifests, impressions): UTC to the second.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def format_utc(moment: datetime) -> str:
    """An aware time as UTC ``YYYY-MM-DDTHH:MM:SSZ`` (:data:`TIME_FORMAT`)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


# Reading side of ``published_at``: ranking and the stores read the same few thousand dates
# over and over, so parsing is cached per string.
@lru_cache(maxsize=65_536)
def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time as aware UTC (naive means UTC); ``None`` if absent or unparseable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def published_timestamp(published_at: str | None) -> float:
    """Unix seconds of a ``published_at`` (0 when undated or unparseable: sorts last)."""
    parsed = parse_time(published_at)
    return 0.0 if parsed is None else parsed.timestamp()


def utc_micros(moment: datetime) -> int:
    """An aware time as integer microseconds since 1970: exact, unlike float seconds."""
    return (moment - _EPOCH) // _MICROSECOND


@lru_cache(maxsize=65_536)
def published_micros(published_at: str | None) -> int | None:
    """A ``published_at`` as :func:`utc_micros` (``None`` if absent or unparseable)."""
    parsed = parse_time(published_at)
    return None if parsed is None else utc_micros(parsed)
