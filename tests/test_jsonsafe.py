"""models.jsonsafe: hostile JSON is one JSONInputError with a place and a reason, never a crash."""

from __future__ import annotations

import json
import sys

import pytest

from models.jsonsafe import MAX_DEPTH, JSONInputError, loads

DEEP = "[" * 5000 + "]" * 5000


def test_deep_nesting_is_refused_before_parsing() -> None:
    with pytest.raises(JSONInputError) as info:
        loads(DEEP)
    error = info.value
    assert (error.line, error.column) == (1, MAX_DEPTH + 1)
    assert error.reason == f"invalid JSON (nested deeper than {MAX_DEPTH} levels at column 65)"


def test_deep_field_in_a_multi_line_document_names_its_line() -> None:
    text = '{\n  "id": "a",\n  "extra": ' + "{" * 3000 + "}" * 3000 + "\n}"
    with pytest.raises(JSONInputError) as info:
        loads(text)
    assert info.value.line == 3 and "nested deeper than" in info.value.reason
    assert str(info.value).startswith("line 3: invalid JSON (")


def test_nesting_at_the_limit_parses() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(text) == json.loads(text)


def test_brackets_inside_strings_do_not_count() -> None:
    record = {"id": "a", "title": "[" * 500 + '"\\' + "{" * 500}
    assert loads(json.dumps(record)) == record


def test_an_integer_too_long_for_python_is_an_input_error() -> None:
    limit = sys.get_int_max_str_digits()
    text = '{"id": "a",\n "n": ' + "7" * (limit + 700) + "}"
    with pytest.raises(JSONInputError) as info:
        loads(text)
    assert (info.value.line, info.value.column) == (2, 7)
    assert info.value.reason == f"invalid JSON (number with more than {limit} digits at column 7)"


def test_syntax_errors_keep_their_position() -> None:
    with pytest.raises(JSONInputError) as info:
        loads('{"a": 1,\n  x}')
    assert info.value.line == 2
    assert info.value.reason.startswith("invalid JSON (Expecting property name")


def test_bytes_must_be_utf8_and_may_carry_a_bom() -> None:
    assert loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    with pytest.raises(JSONInputError, match="not valid UTF-8"):
        loads(b'{"a":\n "\xff"}')


def test_recursion_error_never_escapes_even_with_a_huge_limit() -> None:
    with pytest.raises(JSONInputError, match="nested deeper than"):
        loads("[" * 200_000 + "]" * 200_000, max_depth=10**9)
