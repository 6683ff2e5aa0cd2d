"""The errors of reading articles: a bad record, and a corpus that cannot be used."""

from __future__ import annotations


class RecordError(ValueError):
    """A bad record: where it is, which field, and why."""

    def __init__(self, source: str, line: int | None, field: str | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        what = f" field '{self.field}':" if self.field else ""
        return f"{where}:{what} {self.reason}"


class CorpusError(ValueError):
    """A corpus that cannot be used: bad records (in fail mode), duplicates, or no articles."""

    def __init__(self, message: str, errors: list[RecordError] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)
