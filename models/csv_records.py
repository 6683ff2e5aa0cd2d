"""CSV article files: rows as record dicts (tags split at ``|``), every bad row reported."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from models.errors import CorpusError, RecordError

# The longest CSV cell accepted. Far above any article body; what reaches it is usually an
# unclosed quote that swallowed the rest of the file into one cell.
CSV_FIELD_LIMIT = 16 * 1024 * 1024


def csv_records(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """Records of a CSV text with their line numbers; a bad row yields its RecordError."""
    # The csv module's default cell limit (128 KiB) is below a long article body, and after
    # its "field larger than field limit" error the parser resumes in the middle of the record,
    # reading the rest of the cell as rows. So parse with a limit no cell of this text can
    # reach and enforce CSV_FIELD_LIMIT per record, which keeps every later record intact.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise CorpusError(f"{source}:{max(reader.line_num, 1)}: bad CSV header ({exc})") from None
    if not header or "id" not in header:
        raise CorpusError(f"{source}:1: CSV header must include an 'id' column")
    rows = iter(reader)
    while True:
        start = reader.line_num + 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            number = reader.line_num
            yield number, RecordError(source, number, None, f"bad CSV ({exc})")
            continue
        yield reader.line_num, _csv_record(row, source, start, reader.line_num)


def _csv_record(row: dict[Any, Any], source: str, start: int, end: int) -> Any:
    """One CSV row as a record dict (tags split at ``|``), or the RecordError it makes."""
    if None in row:
        return RecordError(source, end, None, "more cells than header columns")
    record: dict[str, Any] = {key: value for key, value in row.items() if value is not None}
    for key, value in record.items():
        if len(value) > CSV_FIELD_LIMIT:
            hint = ""
            if start < end:
                hint = f"; the record spans lines {start}-{end}: an unclosed quote?"
            return RecordError(
                source,
                start,
                key,
                f"{len(value):,} characters, over the {CSV_FIELD_LIMIT:,}-character limit{hint}",
            )
    tags = record.get("tags")
    record["tags"] = [t for t in tags.split("|")] if tags else []
    return record
