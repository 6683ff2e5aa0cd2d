"""JSON parsing that turns every kind of bad input into one catchable error.

``json.loads`` fails on hostile input in ways a ``except json.JSONDecodeError`` misses: nesting a
few thousand levels deep raises RecursionError, and an integer longer than Python's
``sys.get_int_max_str_digits()`` raises a plain ValueError. :func:`loads` checks the nesting
depth before parsing (without recursion) and maps every failure to :class:`JSONInputError`,
which carries the line, the column and a reason, so callers can report ``FILE:LINE: reason``.

Every JSON this project reads (article records, configs, model files, queue entries, HTTP
bodies) is a few levels deep, so :data:`MAX_DEPTH` is far above any honest input.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# Arrays and objects nested deeper than this are refused (records are flat; a manifest is 4).
MAX_DEPTH = 64

# A JSON string: quotes around anything but quote and backslash, or backslash escapes. An
# unterminated one runs to the end of the text, so every match succeeds where it starts and the
# scan stays linear (a pattern that fails there restarts at every escaped quote of an
# unterminated ``"\"\"\"...``: quadratic, 1.1 s for a 16 KB body).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
# A \u escape of a UTF-16 surrogate: only such text can parse to a string with a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_BRACKET = re.compile(r"[\[\]{}]")


class JSONInputError(ValueError):
    """Text that is not acceptable JSON; ``line``/``column`` are 1-based where known."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        return self.reason if self.line is None else f"line {self.line}: {self.reason}"


def loads(text: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` as JSON, or raise :class:`JSONInputError` (never RecursionError).

    Bytes must be UTF-8 (RFC 8259). The reason of a syntax error keeps the wording
    ``invalid JSON (<what> at column <n>)``; ``line`` says where in a multi-line text.
    """
    if isinstance(text, bytes | bytearray):
        text = _decode(bytes(text))
    _check_depth(text, max_depth)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONInputError(
            f"invalid JSON ({exc.msg} at column {exc.colno})", exc.lineno, exc.colno
        ) from None
    except RecursionError:
        # Only reachable with a max_depth above the interpreter's recursion limit.
        raise JSONInputError(f"invalid JSON (nested deeper than {max_depth} levels)") from None
    except ValueError as exc:
        # CPython's limit on integer digits ("Exceeds the limit (4300 digits) ...").
        raise _long_number_error(text, exc) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(text, value)
    return value


def _check_surrogates(text: str, value: Any) -> None:
    """Refuse a string holding a lone UTF-16 surrogate (``"\\ud800"``): valid JSON, but no
    UTF-8 can carry it, so it would fail later, in a Redis key or an HTTP answer."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = f"\\u{ord(item[exc.start]):04x}"
                found = re.search(re.escape(bad), text, re.IGNORECASE)
                line, column = (None, None) if found is None else _position(text, found.start())
                where = "" if column is None else f" at column {column}"
                raise JSONInputError(
                    f"invalid JSON (lone surrogate {bad} in a string{where}; text must be"
                    " Unicode characters)",
                    line,
                    column,
                ) from None


def _decode(data: bytes) -> str:
    try:
        # A byte-order mark is tolerated (RFC 8259 allows ignoring it; Windows editors add it).
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JSONInputError(f"not valid UTF-8 (byte at offset {exc.start})", line) from None


def _blank_strings(text: str) -> str:
    """``text`` with every string's contents replaced by spaces (same length, same offsets)."""
    return _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)


def _check_depth(text: str, max_depth: int) -> None:
    """Raise JSONInputError at the first bracket nested deeper than ``max_depth``."""
    # Fast path: with fewer opening brackets than the limit (even counting those inside
    # strings) the text cannot be too deep; an article line has a handful.
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    blanked = _blank_strings(text)
    for match in _BRACKET.finditer(blanked):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                line, column = _position(text, match.start())
                raise JSONInputError(
                    f"invalid JSON (nested deeper than {max_depth} levels at column {column})",
                    line,
                    column,
                )
        else:
            depth -= 1  # unbalanced text is json.loads's to report


def _long_number_error(text: str, exc: ValueError) -> JSONInputError:
    limit = sys.get_int_max_str_digits()
    if limit:
        match = re.search(rf"\d{{{limit + 1},}}", _blank_strings(text))
        if match is not None:
            line, column = _position(text, match.start())
            return JSONInputError(
                f"invalid JSON (number with more than {limit} digits at column {column})",
                line,
                column,
            )
    return JSONInputError(f"invalid JSON ({exc})")


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
