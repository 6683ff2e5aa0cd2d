"""Embedded mode's rules: a JSON file (``RECS_RULES_FILE``), validated like the admin API's.

The file has the shape ``recs rules export`` prints, so a rule set kept in git serves a model
directory and a Redis deployment alike::

    {"rules": {"takedown-1": {"hide": ["a-123"], "note": "legal"}, ...}}

It is validated in full at start (a bad rule stops the server with an error naming the rule
and the field) and read again when its modification time or size changes; a later bad edit is
logged and the last good rules stay in force.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import jsonsafe
from service.rules.schema import RuleError, utc_stamp, validate_document
from service.store.base import RuleSet
from service.store.rules_cache import DEFAULT_RULES_TTL, RulesCache

log = logging.getLogger(__name__)

# A rules file is data an editor writes: far below this.
MAX_FILE_BYTES = 64 * 1024 * 1024


class RulesFileError(ValueError):
    """A rules file that cannot be read or holds an invalid rule (the message names it)."""


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return stat.st_mtime_ns, stat.st_size


def read_rules_file(path: Path, *, max_k: int | None = None) -> tuple[tuple[int, int], RuleSet]:
    """The file's rule set and the (mtime, size) it was read at; RulesFileError if bad.

    ``seq`` is a digest of the rules (never 0 for a non-empty set): it changes with every
    change of the file's rules, also across restarts, so ETags built on it stay right.
    """
    stamp = _stamp(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise RulesFileError(f"{path}: over {MAX_FILE_BYTES} bytes")
    try:
        document = jsonsafe.loads(data, max_depth=16)
    except jsonsafe.JSONInputError as exc:
        raise RulesFileError(f"{path}: {exc}") from None
    try:
        bodies = validate_document(document, max_k=max_k)
    except RuleError as exc:
        raise RulesFileError(f"{path}: {exc}") from None
    modified = utc_stamp(datetime.fromtimestamp(stamp[0] / 1e9, UTC))
    given: dict[str, Any] = document["rules"]
    rules: dict[str, dict[str, Any]] = {}
    for rule_id, body in sorted(bodies.items()):
        raw = given[rule_id]
        # Who and when as the file says (an export keeps them), else the file's own.
        at = raw.get("updated_at") if isinstance(raw.get("updated_at"), str) else modified
        by = raw.get("updated_by") if isinstance(raw.get("updated_by"), str) else "file"
        rules[rule_id] = {"id": rule_id, **body, "updated_at": at, "updated_by": by}
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":")).encode()
    digest = int.from_bytes(hashlib.blake2b(canonical, digest_size=6).digest(), "big")
    return stamp, RuleSet((digest or 1) if rules else 0, rules)


class RulesFile:
    """The rules of one file, re-read within ``ttl`` seconds of a change to it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_k: int | None = None,
        ttl: float = DEFAULT_RULES_TTL,
    ) -> None:
        """Reads and validates the file now: RulesFileError if it is missing or bad."""
        self.path = Path(path)
        self.max_k = max_k
        stamp, first = read_rules_file(self.path, max_k=max_k)
        loaded = iter([(stamp, first)])
        self._cache = RulesCache(
            lambda: _stamp(self.path),
            lambda: next(loaded, None) or read_rules_file(self.path, max_k=self.max_k),
            ttl,
            keep_on=(RulesFileError,),
        )
        self._cache.get()

    def rules(self) -> RuleSet:
        """The file's rules (the last good ones if the file became unreadable or invalid)."""
        return self._cache.get()

    def read_now(self) -> RuleSet:
        """The file's rules as they are now (the last good ones if the file is bad now)."""
        try:
            return read_rules_file(self.path, max_k=self.max_k)[1]
        except RulesFileError as exc:
            log.warning("%s; the last good rules stay in force", exc)
            return self._cache.get()
