"""Import the Reuters-21578 newswire collection (``reut2-*.sgm``) as articles.

The files are SGML, not XML: text is escaped with ``&lt;``/``&amp;`` and numeric references to
control characters (``&#3;`` ends every story), and the bytes are Latin-1. Each ``<REUTERS>``
document becomes one :class:`~models.records.Article` with id ``reuters-<NEWID>``.

The PLACES, PEOPLE, ORGS and EXCHANGES categories become tags. TOPICS go to ``extra["topics"]``
only: they are the evaluation ground truth and must never reach the model as input.
"""

from __future__ import annotations

import html.entities
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from models.importers.common import ImportStats, check_on_error, handle_error, strip_control
from models.records import (
    Article,
    CorpusError,
    OnError,
    RecordError,
    article_from_mapping,
    format_utc,
)

FILE_PATTERN = "reut2-*.sgm"
TAG_FIELDS = ("PLACES", "PEOPLE", "ORGS", "EXCHANGES")

_OPEN = re.compile(r"<REUTERS\b([^>]*)>")
_CLOSE = "</REUTERS>"
_ATTRIBUTE = re.compile(r'([A-Za-z]+)="([^"]*)"')
_ELEMENTS = {
    name: re.compile(rf"<{name}\b[^>]*>(.*?)</{name}>", re.S)
    for name in ("DATE", "TITLE", "BODY", "TOPICS", *TAG_FIELDS)
}
_CATEGORY = re.compile(r"<D>(.*?)</D>", re.S)
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
# DATE is "26-FEB-1987 15:01:01.79", at times space-padded or followed by wire noise ("&#5;F").
_DATE = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})(?![\d:])")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
# The wire signature closing a story: "Reuter", "REUTER", "REUTER...", "REUTER^M", "Reuter4",
# "REUTER TAW", "REUTER11:43/VB"... Mixed-case "Reuter" only counts alone on its line or after a
# full stop, because it is also a surname (Edzard Reuter of Daimler-Benz is in the 1987 news).
_SIGNATURE = re.compile(
    r"(?:(?:^|\n|(?<=\.))[ \t]*(?:Reuters?|reuters?)|(?:^|(?<=[\s.]))(?:REUTERS?|REUTE))"
    r"(?:\.\.\.)?(?:\^M)?\d?(?:\d\d:\d\d/[A-Z]+)?(?:[ \t]+[A-Z]{1,3})?\s*\Z"
)


def iter_reuters(
    directory: str | Path, *, on_error: OnError = "fail", stats: ImportStats | None = None
) -> Iterator[Article]:
    """Yield the articles of every ``reut2-*.sgm`` file in ``directory``, in NEWID order.

    Documents with neither title nor body (the ``TYPE="UNPROC"`` tables) are skipped and counted
    in ``stats.skipped_empty``. A malformed document raises :class:`RecordError` naming
    file:line (``on_error="fail"``) or is skipped and kept in ``stats.errors`` (``"skip"``).
    A missing directory or one without ``reut2-*.sgm`` files raises :class:`CorpusError` at once.
    """
    check_on_error(on_error)
    files = reuters_files(directory)
    return _iter_files(files, on_error, stats if stats is not None else ImportStats())


def reuters_files(directory: str | Path) -> list[Path]:
    """The ``reut2-*.sgm`` files of ``directory`` in name order, or :class:`CorpusError`."""
    path = Path(directory)
    if not path.exists():
        raise CorpusError(f"{path}: no such directory")
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected the Reuters-21578 directory)")
    files = sorted(path.glob(FILE_PATTERN))
    if not files:
        raise CorpusError(f"{path}: no {FILE_PATTERN} files (is this the Reuters-21578 directory?)")
    return files


def _iter_files(files: list[Path], on_error: OnError, stats: ImportStats) -> Iterator[Article]:
    first_seen: dict[str, str] = {}
    for path in files:
        source = str(path)
        try:
            # Latin-1 maps every byte, so decoding cannot fail; the collection is Latin-1.
            text = path.read_bytes().decode("latin-1")
        except OSError as exc:
            raise CorpusError(f"{source}: cannot read file ({exc.strerror or exc})") from None
        for line, attributes, content in _documents(text, source, on_error, stats):
            stats.documents += 1
            try:
                article = _article(attributes, content, source, line, stats)
                if article is None:
                    stats.skipped_empty += 1
                    continue
                if article.id in first_seen:
                    raise RecordError(
                        source,
                        line,
                        "id",
                        f"duplicate id {article.id!r} (first at {first_seen[article.id]})",
                    )
            except RecordError as error:
                handle_error(error, on_error, stats)
                continue
            first_seen[article.id] = f"{source}:{line}"
            stats.count(article.title, article.body, article.tags)
            yield article


def _documents(
    text: str, source: str, on_error: OnError, stats: ImportStats
) -> Iterator[tuple[int, dict[str, str], str]]:
    """Yield ``(line, REUTERS attributes, content)`` for each document of one file."""
    opens = list(_OPEN.finditer(text))
    line, counted_to = 1, 0
    for index, match in enumerate(opens):
        line += text.count("\n", counted_to, match.start())
        counted_to = match.start()
        limit = opens[index + 1].start() if index + 1 < len(opens) else len(text)
        end = text.find(_CLOSE, match.end(), limit)
        if end < 0:
            stats.documents += 1
            handle_error(
                RecordError(source, line, None, "<REUTERS> document has no closing </REUTERS>"),
                on_error,
                stats,
            )
            continue
        attributes = {key.upper(): value for key, value in _ATTRIBUTE.findall(match.group(1))}
        yield line, attributes, text[match.end() : end]


def _article(
    attributes: dict[str, str], content: str, source: str, line: int, stats: ImportStats
) -> Article | None:
    """Build the article of one document, or ``None`` if it has neither title nor body."""
    new_id = attributes.get("NEWID", "")
    if not new_id.isdigit():
        reason = f"NEWID {new_id[:20]!r} is not a number" if new_id else "NEWID is missing"
        raise RecordError(source, line, "id", reason)
    title = " ".join(_text(_element(content, "TITLE")).split())
    body = _strip_signature(_text(_element(content, "BODY")))
    if not title and not body:
        return None
    tags = [tag for name in TAG_FIELDS for tag in _categories(content, name)]
    record = {
        "id": f"reuters-{int(new_id)}",
        "title": title,
        "body": body,
        "tags": list(dict.fromkeys(tags)),
        "published_at": _published_at(_element(content, "DATE"), stats),
        "topics": list(dict.fromkeys(_categories(content, "TOPICS"))),
        "lewissplit": attributes.get("LEWISSPLIT", ""),
        "cgisplit": attributes.get("CGISPLIT", ""),
        # TOPICS="YES" with LEWISSPLIT is what selects the standard ModApte split.
        "topics_attr": attributes.get("TOPICS", ""),
    }
    return article_from_mapping(record, source=source, line=line)


def _element(content: str, name: str) -> str:
    match = _ELEMENTS[name].search(content)
    return match.group(1) if match else ""


def _categories(content: str, name: str) -> list[str]:
    values = (_text(value).strip() for value in _CATEGORY.findall(_element(content, name)))
    return [value for value in values if value]


def _text(raw: str) -> str:
    """Resolve SGML entities and drop control characters."""
    return strip_control(_ENTITY.sub(_resolve_entity, raw))


def _resolve_entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name.startswith("#"):
        code = int(name[2:], 16) if name[1:2] in ("x", "X") else int(name[1:])
        return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code <= 0xDFFF else ""
    # Only real entity names are replaced; anything else is kept as literal text.
    return html.entities.html5.get(f"{name};", match.group(0))


def _strip_signature(body: str) -> str:
    # A few stories carry the signature twice ("REUTER\n Reuter").
    for _ in range(2):
        body = _SIGNATURE.sub("", body.strip()).strip()
    return body


def _published_at(raw: str, stats: ImportStats) -> str | None:
    """``"26-FEB-1987 15:01:01.79"`` -> ``"1987-02-26T15:01:01Z"``; times are taken as UTC.

    A corrupt DATE gives ``None`` (counted in ``stats.bad_dates``) rather than a guess: the one
    in the collection, "31-MAR-1987 605:12:19.12", sits between stories of 24 and 26 April.
    """
    match = _DATE.match(raw)
    month = _MONTHS.get(match.group(2).upper()) if match else None
    if match is None or month is None:
        stats.bad_dates += bool(raw.strip())
        return None
    day, year, hour, minute, second = (int(match.group(i)) for i in (1, 3, 4, 5, 6))
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        stats.bad_dates += 1
        return None
    return format_utc(moment)
