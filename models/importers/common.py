"""Pieces shared by the dataset importers: counters and bad-record handling."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.records import OnError, RecordError

# C0/C1 control characters other than tab and newline: wire-service junk, never article text.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass
class ImportStats:
    """What one import run saw; pass one in to an importer to read the counts afterwards."""

    documents: int = 0
    imported: int = 0
    without_title: int = 0
    without_body: int = 0
    with_tags: int = 0
    skipped_empty: int = 0
    bad_entities: int = 0
    bad_dates: int = 0
    errors: list[RecordError] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Documents not imported, for whatever reason."""
        return self.skipped_empty + len(self.errors)

    def count(self, title: str, body: str, tags: tuple[str, ...] | list[str]) -> None:
        """Record one imported article."""
        self.imported += 1
        self.without_title += not title
        self.without_body += not body
        self.with_tags += bool(tags)


def check_on_error(on_error: OnError) -> None:
    """Reject an ``on_error`` value other than ``"fail"`` or ``"skip"``."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")


def handle_error(error: RecordError, on_error: OnError, stats: ImportStats) -> None:
    """Raise ``error`` in fail mode; in skip mode keep it in ``stats`` and carry on."""
    if on_error == "fail":
        raise error
    stats.errors.append(error)


def strip_control(text: str) -> str:
    """Drop control characters except tab and newline."""
    return _CONTROL_CHARS.sub("", text)
