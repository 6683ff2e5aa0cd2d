"""Import the MIND (Microsoft News Dataset) ``news.tsv`` and ``behaviors.tsv`` files.

``news.tsv`` rows are NewsID, Category, SubCategory, Title, Abstract, URL, TitleEntities,
AbstractEntities (tab-separated, no header, UTF-8). The entity columns are JSON lists of
Wikidata entities; their labels plus the subcategory become the article's tags.

``behaviors.tsv`` rows are ImpressionID, UserID, Time, History, Impressions: the click log that
evaluation uses as "readers also read" ground truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import jsonsafe
from models.importers.common import ImportStats, check_on_error, handle_error, strip_control
from models.records import (
    Article,
    CorpusError,
    OnError,
    RecordError,
    article_from_mapping,
    format_utc,
)

NEWS_COLUMNS = (
    "NewsID",
    "Category",
    "SubCategory",
    "Title",
    "Abstract",
    "URL",
    "TitleEntities",
    "AbstractEntities",
)
BEHAVIOR_COLUMNS = ("ImpressionID", "UserID", "Time", "History", "Impressions")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


@dataclass(frozen=True, slots=True)
class Impression:
    """One impression log row: what a user had read, then what was shown and clicked."""

    impression_id: str
    user_id: str
    time: str
    history: list[str]
    impressions: list[tuple[str, bool]]

    @property
    def clicked(self) -> list[str]:
        """News ids clicked in this impression."""
        return [news_id for news_id, clicked in self.impressions if clicked]


def iter_mind(
    news_tsv: str | Path, *, on_error: OnError = "fail", stats: ImportStats | None = None
) -> Iterator[Article]:
    """Yield one article per row of a MIND ``news.tsv`` file.

    A row with the wrong number of columns, a bad NewsID, no title and no abstract, or a
    repeated NewsID raises :class:`RecordError` naming file:line and field
    (``on_error="fail"``), or is skipped and kept in ``stats.errors`` (``"skip"``). Malformed
    entity JSON is not an error: the row just gets no entity tags (counted in
    ``stats.bad_entities``). A missing or unreadable file raises :class:`CorpusError` at once.
    """
    check_on_error(on_error)
    rows = _tsv_rows(Path(news_tsv), "news.tsv")
    return _iter_news(rows, str(news_tsv), on_error, stats if stats is not None else ImportStats())


def read_mind_behaviors(
    path: str | Path, *, on_error: OnError = "fail", stats: ImportStats | None = None
) -> list[Impression]:
    """Read a MIND ``behaviors.tsv`` file; times become ISO-8601 UTC strings.

    Bad rows raise :class:`RecordError` (``on_error="fail"``) or are skipped and kept in
    ``stats.errors`` (``"skip"``). MIND gives no time zone; the times are taken as UTC.
    """
    check_on_error(on_error)
    stats = stats if stats is not None else ImportStats()
    source = str(path)
    out: list[Impression] = []
    for line, cells in _tsv_rows(Path(path), "behaviors.tsv"):
        stats.documents += 1
        try:
            impression = _impression(cells, source, line)
        except RecordError as error:
            handle_error(error, on_error, stats)
            continue
        stats.imported += 1
        out.append(impression)
    return out


def _iter_news(
    rows: Iterator[tuple[int, list[str]]], source: str, on_error: OnError, stats: ImportStats
) -> Iterator[Article]:
    first_seen: dict[str, int] = {}
    for line, cells in rows:
        stats.documents += 1
        try:
            article = _news_article(cells, source, line, stats)
            if article.id in first_seen:
                raise RecordError(
                    source,
                    line,
                    "id",
                    f"duplicate NewsID {article.id!r} (first at {source}:{first_seen[article.id]})",
                )
        except RecordError as error:
            handle_error(error, on_error, stats)
            continue
        first_seen[article.id] = line
        stats.count(article.title, article.body, article.tags)
        yield article


def _news_article(cells: list[str], source: str, line: int, stats: ImportStats) -> Article:
    _check_columns(cells, NEWS_COLUMNS, source, line)
    news_id, category, subcategory, title, abstract, url, title_ents, abstract_ents = (
        strip_control(cell).strip() for cell in cells
    )
    labels: list[str] = []
    for raw in (title_ents, abstract_ents):
        entities = _entities(raw)
        if entities is None:
            stats.bad_entities += 1
            continue
        labels.extend(entities)
    if subcategory:
        labels.append(subcategory)
    record = {
        "id": news_id,
        "title": title,
        "body": abstract,
        "section": category,
        "url": url,
        "tags": list(dict.fromkeys(labels)),
        "subcategory": subcategory,
    }
    return article_from_mapping(record, source=source, line=line)


def _entities(raw: str) -> list[str] | None:
    """Entity labels of one entity column; ``None`` if the column is not a JSON list."""
    if not raw:
        return []
    try:
        entities: Any = jsonsafe.loads(raw)
    except jsonsafe.JSONInputError:
        return None
    if not isinstance(entities, list):
        return None
    labels = []
    for entity in entities:
        label = entity.get("Label") if isinstance(entity, dict) else None
        if isinstance(label, str) and label.strip():
            labels.append(label.strip())
    return labels


def _impression(cells: list[str], source: str, line: int) -> Impression:
    _check_columns(cells, BEHAVIOR_COLUMNS, source, line)
    impression_id, user_id, raw_time, history, shown = (cell.strip() for cell in cells)
    if not impression_id:
        raise RecordError(source, line, "impression_id", "is empty")
    if not user_id:
        raise RecordError(source, line, "user_id", "is empty")
    try:
        moment = datetime.strptime(raw_time, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(
            source, line, "time", f"{raw_time[:40]!r} is not like '11/12/2019 2:14:46 PM'"
        ) from None
    impressions: list[tuple[str, bool]] = []
    for item in shown.split():
        news_id, _, label = item.rpartition("-")
        if not news_id or label not in ("0", "1"):
            # The MIND test split has no click labels; it cannot serve as ground truth.
            raise RecordError(
                source, line, "impressions", f"{item[:40]!r} is not 'NewsID-1' or 'NewsID-0'"
            )
        impressions.append((news_id, label == "1"))
    return Impression(
        impression_id=impression_id,
        user_id=user_id,
        time=format_utc(moment),
        history=history.split(),
        impressions=impressions,
    )


def _check_columns(cells: list[str], columns: tuple[str, ...], source: str, line: int) -> None:
    if len(cells) != len(columns):
        raise RecordError(
            source,
            line,
            None,
            f"expected {len(columns)} tab-separated columns ({', '.join(columns)}),"
            f" got {len(cells)}",
        )


def _tsv_rows(path: Path, kind: str) -> Iterator[tuple[int, list[str]]]:
    """Read a headerless UTF-8 TSV file now; return an iterator of ``(line, cells)``."""
    source = str(path)
    if path.is_dir():
        raise CorpusError(f"{source}: is a directory, not a MIND {kind} file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{source}: no such file") from None
    except OSError as exc:
        raise CorpusError(f"{source}: cannot read file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"{source}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); MIND files are UTF-8"
        ) from None
    # Split on "\n" only: str.splitlines() would also break rows at U+2028 or U+0085 in a title.
    rows = [
        (number, row.removesuffix("\r").split("\t"))
        for number, row in enumerate(text.split("\n"), start=1)
        if row.strip()
    ]
    if not rows:
        raise CorpusError(f"{source}: empty file, no MIND {kind} rows")
    return iter(rows)
