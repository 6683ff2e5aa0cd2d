"""models.jsonsafe: hostile JSON is one JSONInputError with a place and a reason, never a crash."""

from __future__ import annotations

import json
import sys

import pytest

from models.jsonsafe import _STRING, MAX_DEPTH, JSONInputError, loads

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


def test_an_unterminated_string_is_one_match_so_the_scan_stays_linear() -> None:
    # Every string match must succeed where it starts: a pattern that fails at the end of an
    # unterminated string restarts at each escaped quote inside it (quadratic; a 64 KB body
    # took 11 s).
    text = '["' + '\\"' * 1000 + "a"
    match = _STRING.match(text, 1)
    assert match is not None and match.end() == len(text)
    dangling = '"ends in a backslash\\'
    assert _STRING.fullmatch(dangling) is not None
    with pytest.raises(JSONInputError, match="Unterminated string"):
        loads('{"title": "' + '\\"' * 32_000)  # 64 KB, the admin body limit


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{"id": "a\\ud800"}', 1, 10),
        ('{\n"id": "ok",\n"title": "x\\uDFFFy"}', 3, 12),
        ('["\\udc00\\ud800"]', 1, 3),
        ('{"\\ud800": 1}', 1, 3),
    ],
)
def test_lone_surrogates_are_an_input_error(text: str, line: int, column: int) -> None:
    # Valid JSON that no UTF-8 can carry: it would fail later, in a Redis key or an answer.
    with pytest.raises(JSONInputError, match="lone surrogate") as info:
        loads(text)
    assert (info.value.line, info.value.column) == (line, column)


def test_surrogate_pairs_and_escaped_backslashes_are_text() -> None:
    assert loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert loads('"\\\\ud800"') == "\\ud800"  # a backslash, then letters
