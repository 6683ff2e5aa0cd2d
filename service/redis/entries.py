"""Entries of the update stream :data:`service.redis.keys.UPDATES` as the writer reads them:
decoded, validated like an article file, ordered by id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models import jsonsafe
from models.records import Article, RecordError, article_from_mapping, validate_id
from service.redis import keys
from service.redis.client import text

OPS = ("upsert", "delete")


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable ``(ms, seq)`` pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def before(ms: int) -> str:
    """The stream id just before ``ms``-0 (XREAD returns entries after the id it is given)."""
    return f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0-0"


def iso_ms(stamp: str) -> int:
    """An ISO time (UTC when naive) as unix milliseconds, the unit of stream ids."""
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True)
class Entry:
    """One decoded stream entry; ``error`` is set when it cannot be applied (a bad record)."""

    id: str
    op: str
    article_id: str
    article: Article | None = None
    error: str | None = None


def parse_entry(entry_id: str, fields: Mapping[Any, Any]) -> Entry:
    """Decode and validate a stream entry with the same rules as an article file."""
    values = {text(k): text(v) for k, v in fields.items()}
    op, article_id = values.get("op", ""), values.get("id", "")
    if op not in OPS:
        return Entry(entry_id, op, article_id, error=f"field 'op': must be one of {OPS}")
    try:
        validate_id(article_id, source=f"{keys.UPDATES} {entry_id}")
        if op == "delete":
            return Entry(entry_id, op, article_id)
        try:
            data = jsonsafe.loads(values.get("article", ""))
        except jsonsafe.JSONInputError as exc:
            return Entry(entry_id, op, article_id, error=f"field 'article': {exc.reason}")
        article = article_from_mapping(data, source=f"{keys.UPDATES} {entry_id}")
    except RecordError as exc:
        where = f"field '{exc.field}': " if exc.field else ""
        return Entry(entry_id, op, article_id, error=f"{where}{exc.reason}")
    if article.id != article_id:
        return Entry(entry_id, op, article_id, error="field 'id': differs from the entry's id")
    return Entry(entry_id, op, article_id, article)
