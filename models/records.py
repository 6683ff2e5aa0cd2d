"""Article records: the one input format of the model, and its validation.

An article arrives as a JSON object (one per line of a JSON Lines file) or as a CSV row with the
same columns (tags separated by ``|``). Every problem is reported as a :class:`RecordError` that
names the file, line, field and reason, so a newsroom export with one bad row is easy to fix.
"""

from __future__ import annotations

import codecs
import gzip
import io
import itertools
import json
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from models import jsonsafe
from models.csv_records import CSV_FIELD_LIMIT as CSV_FIELD_LIMIT
from models.csv_records import csv_records
from models.errors import CorpusError as CorpusError
from models.errors import RecordError as RecordError
from models.flags import FIELDS as FLAG_FIELDS
from models.flags import FlagError, parse_flags

# The time helpers live in models/times.py; these names stay importable from here.
from models.times import TIME_FORMAT as TIME_FORMAT
from models.times import format_utc as format_utc
from models.times import parse_time as parse_time
from models.times import published_micros as published_micros
from models.times import published_timestamp as published_timestamp
from models.times import utc_micros as utc_micros

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
KNOWN_FIELDS = (
    *("id", "title", "body", "tags", "section", "published_at", "url", "image_url"),
    *FLAG_FIELDS,
)
OnError = Literal["fail", "skip"]
# How many bad records one failed read reports before it stops listing them.
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True, slots=True)
class Article:
    """One article. ``extra`` keeps unknown fields; they are never model input."""

    id: str
    title: str = ""
    body: str = ""
    tags: tuple[str, ...] = ()
    section: str = ""
    published_at: str | None = None
    url: str = ""
    image_url: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Editorial flags (models/flags.py); times as UTC ``YYYY-MM-DDTHH:MM:SSZ``.
    no_recommend: bool = False
    sponsored: bool = False
    embargo_until: str | None = None
    expires_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The article as a JSON-ready dict, unknown fields included."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            id=self.id,
            title=self.title,
            body=self.body,
            tags=list(self.tags),
            section=self.section,
            published_at=self.published_at,
            url=self.url,
            image_url=self.image_url,
        )
        # Flags only when set: the records of unflagged articles stay as they were.
        for name in FLAG_FIELDS:
            value = getattr(self, name)
            if value:
                out[name] = value
        return out


@dataclass
class ReadResult:
    """Articles read from one or more files, and the bad records skipped on the way."""

    articles: list[Article]
    errors: list[RecordError]

    @property
    def skipped(self) -> int:
        return len(self.errors)


def validate_id(value: Any, *, source: str = "<input>", line: int | None = None) -> str:
    """Return ``value`` if it is a valid article id, else raise :class:`RecordError`."""
    if not isinstance(value, str):
        raise RecordError(source, line, "id", f"must be a string, got {_type_name(value)}")
    if not ID_PATTERN.fullmatch(value):
        raise RecordError(
            source, line, "id", f"{value[:40]!r} must be 1-128 characters of A-Z a-z 0-9 . _ : -"
        )
    return value


def parse_published_at(value: Any, *, source: str = "<input>", line: int | None = None) -> str:
    """Normalise an ISO-8601 timestamp to UTC ``YYYY-MM-DDTHH:MM:SSZ`` (naive means UTC)."""
    if not isinstance(value, str):
        raise RecordError(
            source, line, "published_at", f"must be an ISO-8601 string, got {_type_name(value)}"
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RecordError(
            source, line, "published_at", f"{value[:40]!r} is not an ISO-8601 date/time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        # e.g. "0001-01-01T00:00:00+01:00": valid ISO, but its UTC time is before year 1.
        raise RecordError(
            source, line, "published_at", f"{value[:40]!r} is out of range in UTC"
        ) from None
    return format_utc(utc)


def article_from_mapping(data: Any, *, source: str = "<input>", line: int | None = None) -> Article:
    """Validate one decoded record and build an :class:`Article` from it."""
    if not isinstance(data, Mapping):
        raise RecordError(source, line, None, f"record must be an object, got {_type_name(data)}")
    if "id" not in data or data["id"] in (None, ""):
        raise RecordError(source, line, "id", "is required")
    article_id = validate_id(data["id"], source=source, line=line)

    def text_field(name: str) -> str:
        value = data.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise RecordError(source, line, name, f"must be a string, got {_type_name(value)}")
        return value.strip()

    title, body = text_field("title"), text_field("body")
    if not title and not body:
        raise RecordError(source, line, "title", "title and body are both empty; one is required")

    raw_tags = data.get("tags")
    if raw_tags is None:
        tags: tuple[str, ...] = ()
    elif isinstance(raw_tags, list):
        for position, tag in enumerate(raw_tags):
            if not isinstance(tag, str):
                raise RecordError(
                    source, line, "tags", f"item {position} must be a string, got {_type_name(tag)}"
                )
        tags = tuple(tag.strip() for tag in raw_tags if tag.strip())
    else:
        raise RecordError(
            source, line, "tags", f"must be a list of strings, got {_type_name(raw_tags)}"
        )

    published = data.get("published_at")
    published_at = (
        None if published in (None, "") else parse_published_at(published, source=source, line=line)
    )
    try:
        flags = parse_flags(data)
    except FlagError as exc:
        raise RecordError(source, line, exc.field, exc.reason) from None
    extra = {key: value for key, value in data.items() if key not in KNOWN_FIELDS}
    return Article(
        id=article_id,
        title=title,
        body=body,
        tags=tags,
        section=text_field("section"),
        published_at=published_at,
        url=text_field("url"),
        image_url=text_field("image_url"),
        extra=extra,
        **flags,
    )


def read_articles(paths: Iterable[str | Path], *, on_error: OnError = "fail") -> ReadResult:
    """Read and validate articles from JSON Lines and CSV files.

    With ``on_error="fail"`` any bad record raises :class:`CorpusError` listing the bad records
    (up to ``MAX_REPORTED_ERRORS``); with ``"skip"`` they are dropped and returned in ``errors``.
    Duplicate ids and an empty result are errors in both modes, since either would silently
    publish a wrong model.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    articles: list[Article] = []
    errors: list[RecordError] = []
    # Where each id was first read, as row numbers into two compact arrays rather than one
    # "file:line" string per article (a million strings at a million articles).
    first_seen: dict[str, int] = {}
    seen_file, seen_line = array("H"), array("Q")
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise CorpusError("no article files given")
    for file_number, path in enumerate(path_list):
        # In fail mode, stop reading (not just listing) once enough bad records are reported.
        if on_error == "fail" and len(errors) >= MAX_REPORTED_ERRORS:
            break
        for line, record in _records(path):
            source = str(path)
            try:
                if isinstance(record, RecordError):
                    raise record
                article = article_from_mapping(record, source=source, line=line)
                if article.id in first_seen:
                    row = first_seen[article.id]
                    first = f"{path_list[seen_file[row]]}:{seen_line[row]}"
                    raise RecordError(
                        source, line, "id", f"duplicate id {article.id!r} (first at {first})"
                    )
            except RecordError as exc:
                errors.append(exc)
                if on_error == "fail" and len(errors) >= MAX_REPORTED_ERRORS:
                    break
                continue
            first_seen[article.id] = len(articles)
            seen_file.append(file_number)
            seen_line.append(line)
            articles.append(article)
    if errors and on_error == "fail":
        listed = "\n".join(f"  {error}" for error in errors)
        more = " (listing stopped there)" if len(errors) >= MAX_REPORTED_ERRORS else ""
        raise CorpusError(f"{len(errors)} bad record(s){more}:\n{listed}", errors)
    if not articles:
        names = ", ".join(str(p) for p in path_list)
        raise CorpusError(f"no valid articles in {names}", errors)
    return ReadResult(articles, errors)


def write_articles_jsonl(articles: Iterable[Article], path: str | Path) -> int:
    """Write articles as JSON Lines (UTF-8); return how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for article in articles:
            handle.write(json.dumps(article.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, decoded record or RecordError)`` for one file."""
    source = str(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        kind = "csv"
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        kind = "jsonl"
    else:
        raise CorpusError(f"{source}: unknown file type (expected .jsonl, .ndjson, .json or .csv)")
    try:
        compressed = path.name.lower().endswith(".gz")
        raw: io.BufferedIOBase = gzip.open(path, "rb") if compressed else open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{source}: is a directory, not an article file") from None
    except PermissionError:
        raise CorpusError(f"{source}: permission denied") from None
    with raw:
        if kind == "jsonl":
            # Line by line: the whole file, its decoded text and a list of its lines at once
            # were three copies of the corpus in memory before the first article was built.
            yield from _jsonl_records(_decoded_lines(raw, source), source)
            return
        try:
            data = raw.read()
        except (OSError, EOFError) as exc:
            raise CorpusError(f"{source}: cannot read file ({exc})") from None
    yield from csv_records(_decode(data, source), source)


def _decoded_lines(raw: io.BufferedIOBase, source: str) -> Iterator[str]:
    """The lines of a UTF-8 file (a leading BOM dropped), split at b"\\n" only."""
    offset = 0
    for number in itertools.count(1):
        try:
            chunk = raw.readline()
        except (OSError, EOFError) as exc:
            raise CorpusError(f"{source}: cannot read file ({exc})") from None
        if not chunk:
            return
        start = 3 if number == 1 and chunk.startswith(codecs.BOM_UTF8) else 0
        try:
            line = chunk[start:].decode("utf-8")
        except UnicodeDecodeError as exc:
            at = start + exc.start
            raise _not_utf8(source, number, chunk[at], offset + at) from None
        offset += len(chunk)
        yield line


def _not_utf8(source: str, line: int, byte: int, offset: int) -> CorpusError:
    return CorpusError(
        f"{source}:{line}: not valid UTF-8 (byte 0x{byte:02x}"
        f" at offset {offset}); re-encode the file as UTF-8"
    )


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _not_utf8(source, line, data[exc.start], exc.start) from None


def _jsonl_records(lines: Iterable[str], source: str) -> Iterator[tuple[int, Any]]:
    # Lines end at "\n" only: str.splitlines() also splits at U+2028, U+0085 and other
    # characters that json.dumps(ensure_ascii=False) leaves raw inside strings.
    for number, raw_line in enumerate(lines, start=1):
        line = raw_line.removesuffix("\n").removesuffix("\r")
        if not line.strip():
            continue
        try:
            yield number, jsonsafe.loads(line)
        except jsonsafe.JSONInputError as exc:
            yield number, RecordError(source, number, None, exc.reason)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
