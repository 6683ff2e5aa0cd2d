"""Every bad input that ``models.records`` must reject, and the good ones it must accept."""

from __future__ import annotations

import codecs
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import csv_records
from models.records import (
    MAX_REPORTED_ERRORS,
    Article,
    CorpusError,
    RecordError,
    article_from_mapping,
    parse_published_at,
    read_articles,
    write_articles_jsonl,
)


def write_jsonl(path: Path, *records: Any) -> Path:
    """Write one line per record: dicts and lists as JSON, strings as they are."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def only_error(path: Path) -> RecordError:
    """Read ``path`` in fail mode and return its single bad record."""
    with pytest.raises(CorpusError) as info:
        read_articles([path])
    assert len(info.value.errors) == 1, info.value
    return info.value.errors[0]


GOOD = {"id": "a1", "title": "Council votes on budget", "body": "The council voted."}


# --- one bad field at a time -------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [{"title": "t"}, {"id": "", "title": "t"}, {"id": None, "title": "t"}],
    ids=["absent", "empty", "null"],
)
def test_missing_id(tmp_path: Path, record: dict[str, Any]) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", GOOD, record)
    error = only_error(path)
    assert (error.source, error.line, error.field) == (str(path), 2, "id")
    assert "is required" in str(error)
    assert str(error).startswith(f"{path}:2: field 'id':")


@pytest.mark.parametrize("bad_id", ["has space", "a/b", "é-accent", "x" * 129, "line\nbreak"])
def test_bad_id_characters_or_length(tmp_path: Path, bad_id: str) -> None:
    error = only_error(write_jsonl(tmp_path / "a.jsonl", {"id": bad_id, "title": "t"}))
    assert error.field == "id"
    assert "1-128 characters" in error.reason


def test_longest_and_punctuated_ids_are_fine(tmp_path: Path) -> None:
    ids = ["x" * 128, "reuters-1", "N34700", "a.b_c:d-e"]
    path = write_jsonl(tmp_path / "a.jsonl", *({"id": i, "title": "t"} for i in ids))
    assert [a.id for a in read_articles([path]).articles] == ids


@pytest.mark.parametrize(("bad_id", "type_name"), [(123, "int"), (["a"], "list"), (1.5, "float")])
def test_non_string_id(tmp_path: Path, bad_id: Any, type_name: str) -> None:
    error = only_error(write_jsonl(tmp_path / "a.jsonl", {"id": bad_id, "title": "t"}))
    assert error.field == "id"
    assert error.reason == f"must be a string, got {type_name}"


@pytest.mark.parametrize(
    "record",
    [{"id": "a"}, {"id": "a", "title": "", "body": ""}, {"id": "a", "title": "  ", "body": "\n"}],
    ids=["absent", "empty", "whitespace"],
)
def test_title_and_body_both_empty(tmp_path: Path, record: dict[str, Any]) -> None:
    error = only_error(write_jsonl(tmp_path / "a.jsonl", record))
    assert error.field == "title"
    assert "title and body are both empty" in error.reason


def test_non_string_title(tmp_path: Path) -> None:
    error = only_error(write_jsonl(tmp_path / "a.jsonl", {"id": "a", "title": 7}))
    assert (error.field, error.reason) == ("title", "must be a string, got int")


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ("politics,local", "must be a list of strings, got str"),
        ({"a": 1}, "must be a list of strings, got dict"),
        (["ok", 3], "item 1 must be a string, got int"),
        ([None], "item 0 must be a string, got null"),
    ],
)
def test_bad_tags(tmp_path: Path, tags: Any, reason: str) -> None:
    error = only_error(write_jsonl(tmp_path / "a.jsonl", {"id": "a", "title": "t", "tags": tags}))
    assert (error.field, error.reason) == ("tags", reason)


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "01/05/2024", 20240501, True])
def test_bad_published_at(tmp_path: Path, value: Any) -> None:
    record = {"id": "a", "title": "t", "published_at": value}
    error = only_error(write_jsonl(tmp_path / "a.jsonl", record))
    assert error.field == "published_at"


def test_published_at_out_of_range_in_utc_is_a_record_error() -> None:
    with pytest.raises(RecordError) as info:
        parse_published_at("0001-01-01T00:00:00+01:00", source="x.jsonl", line=3)
    assert str(info.value) == (
        "x.jsonl:3: field 'published_at': '0001-01-01T00:00:00+01:00' is out of range in UTC"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00Z"),
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"),
        ("2024-05-01 12:00:00.123", "2024-05-01T12:00:00Z"),
        ("2024-05-01", "2024-05-01T00:00:00Z"),
    ],
)
def test_published_at_is_normalised_to_utc(value: str, expected: str) -> None:
    assert parse_published_at(value) == expected


# --- bad lines and bad files ---------------------------------------------------------------------


def test_invalid_json_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", GOOD, '{"id": "b", "title": ')
    error = only_error(path)
    assert (error.line, error.field) == (2, None)
    assert str(error).startswith(f"{path}:2: invalid JSON (")


@pytest.mark.parametrize(("line", "type_name"), [("[1, 2]", "list"), ('"a"', "str"), ("5", "int")])
def test_line_that_is_not_an_object(tmp_path: Path, line: str, type_name: str) -> None:
    error = only_error(write_jsonl(tmp_path / "a.jsonl", GOOD, line))
    assert error.line == 2
    assert error.reason == f"record must be an object, got {type_name}"


def test_latin1_bytes_give_a_clear_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    good = json.dumps(GOOD).encode()
    path.write_bytes(good + b"\n" + '{"id": "b", "title": "Caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(CorpusError) as info:
        read_articles([path])
    message = str(info.value)
    assert message.startswith(f"{path}:2: not valid UTF-8 (byte 0xe9")
    assert "re-encode the file as UTF-8" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        read_articles([tmp_path / "nope.jsonl"])


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "corpus.jsonl"
    folder.mkdir()
    with pytest.raises(CorpusError, match="is a directory"):
        read_articles([folder])


@pytest.mark.parametrize("name", ["articles.txt", "articles.xml", "articles"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(GOOD) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="unknown file type"):
        read_articles([path])


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(CorpusError, match="cannot read file"):
        read_articles([path])


@pytest.mark.parametrize("name", ["a.jsonl.gz", "A.JSONL.GZ"])
def test_gzip_bom_and_crlf_are_fine(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = "\ufeff" + json.dumps(GOOD) + "\r\n" + json.dumps({**GOOD, "id": "a2"}) + "\r\n"
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    assert [a.id for a in read_articles([path]).articles] == ["a1", "a2"]


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", GOOD, {**GOOD, "id": "a2"})
    second = write_jsonl(tmp_path / "b.jsonl", {**GOOD, "id": "b1"}, {**GOOD, "title": "Again"})
    with pytest.raises(CorpusError) as info:
        read_articles([first, second])
    [error] = info.value.errors
    assert str(error) == f"{second}:2: field 'id': duplicate id 'a1' (first at {first}:1)"


def test_duplicate_in_skip_mode_keeps_the_first(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", GOOD, {**GOOD, "title": "Second"})
    result = read_articles([path], on_error="skip")
    assert [a.title for a in result.articles] == [GOOD["title"]]
    assert result.skipped == 1


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty", "blank-lines"])
def test_empty_corpus(tmp_path: Path, content: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match="no valid articles in"):
        read_articles([path])


def test_no_files_given() -> None:
    with pytest.raises(CorpusError, match="no article files given"):
        read_articles([])


def test_all_records_bad_in_skip_mode_is_still_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"id": "a"}, "[]")
    with pytest.raises(CorpusError, match="no valid articles") as info:
        read_articles([path], on_error="skip")
    assert len(info.value.errors) == 2


def test_bad_on_error_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_error must be"):
        read_articles([write_jsonl(tmp_path / "a.jsonl", GOOD)], on_error="ignore")  # type: ignore[arg-type]


# --- hostile JSON: never a RecursionError or a bare ValueError ---------------------------------

DEEP = "[" * 5000 + "]" * 5000


def test_deeply_nested_lines_and_fields_and_huge_integers_are_bad_records(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        GOOD,
        DEEP,
        '{"id": "d1", "title": "t", "meta": ' + DEEP + "}",
        '{"id": "d2", "title": "t", "n": ' + "9" * 5000 + "}",
        {**GOOD, "id": "a2"},
    )
    with pytest.raises(CorpusError) as info:
        read_articles([path])
    assert [str(e) for e in info.value.errors] == [
        f"{path}:2: invalid JSON (nested deeper than 64 levels at column 65)",
        f"{path}:3: invalid JSON (nested deeper than 64 levels at column 99)",
        f"{path}:4: invalid JSON (number with more than 4300 digits at column 33)",
    ]
    result = read_articles([path], on_error="skip")
    assert [a.id for a in result.articles] == ["a1", "a2"] and result.skipped == 3


def test_csv_cells_above_the_csv_module_default_limit_are_read(tmp_path: Path) -> None:
    body = "word " * 60_000  # 300,000 characters: over csv's default 131,072
    path = tmp_path / "a.csv"
    path.write_text(f'id,title,body\na1,Long one,"{body}"\na2,Next,short\n', encoding="utf-8")
    first, second = read_articles([path]).articles
    assert first.body == body.strip() and second.id == "a2"


def test_csv_cell_over_the_field_limit_is_a_bad_record_and_later_rows_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_records, "CSV_FIELD_LIMIT", 1000)
    path = tmp_path / "a.csv"
    path.write_text(
        "id,title,body\n"
        "a1,First,fine\n"
        f'a2,Too long,"{"x" * 1500}\nstill the same cell"\n'
        'a3,After,"two\nlines"\n',
        encoding="utf-8",
    )
    error = only_error(path)
    assert (error.line, error.field) == (3, "body")
    assert str(error) == (
        f"{path}:3: field 'body': 1,520 characters, over the 1,000-character limit;"
        " the record spans lines 3-4: an unclosed quote?"
    )
    result = read_articles([path], on_error="skip")
    assert [a.id for a in result.articles] == ["a1", "a3"] and result.skipped == 1
    assert result.articles[1].body == "two\nlines"


# --- CSV --------------------------------------------------------------------------------------


def test_csv_with_pipe_separated_tags(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "id,title,body,tags,section,published_at\n"
        "a1,Budget vote,Council voted.,politics| local ||budget ,news,2024-05-01T12:00:00+02:00\n"
        'a2,"Title, with comma","Body\nover two lines",,,\n',
        encoding="utf-8",
    )
    first, second = read_articles([path]).articles
    assert first.tags == ("politics", "local", "budget")
    assert (first.section, first.published_at) == ("news", "2024-05-01T10:00:00Z")
    assert (second.title, second.body, second.tags) == (
        "Title, with comma",
        "Body\nover two lines",
        (),
    )
    assert second.published_at is None


def test_csv_missing_id_column(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("title,body\nt,b\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"a\.csv:1: CSV header must include an 'id' column"):
        read_articles([path])


def test_csv_extra_cells(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,title\na1,fine\na2,too,many,cells\n", encoding="utf-8")
    error = only_error(path)
    assert (error.line, error.reason) == (3, "more cells than header columns")


def test_csv_short_rows_and_empty_id(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,title,body\na1,only title\n,no id,x\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        read_articles([path])
    [error] = info.value.errors
    assert (error.line, error.field, error.reason) == (3, "id", "is required")
    assert read_articles([path], on_error="skip").articles[0].title == "only title"


# --- unknown fields, error modes, odd but valid corpora -----------------------------------------


def test_unknown_fields_are_kept_in_extra(tmp_path: Path) -> None:
    record = {**GOOD, "topics": ["cocoa"], "wordcount": 120, "meta": {"desk": "metro"}}
    json_path = write_jsonl(tmp_path / "a.jsonl", record)
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("id,title,desk\nb1,Hello,metro\n", encoding="utf-8")
    from_json, from_csv = read_articles([json_path, csv_path]).articles
    assert from_json.extra == {"topics": ["cocoa"], "wordcount": 120, "meta": {"desk": "metro"}}
    assert from_csv.extra == {"desk": "metro"}
    assert from_json.to_dict()["topics"] == ["cocoa"]
    assert "topics" not in from_json.tags


def test_skip_mode_counts_and_keeps_good_records(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        GOOD,
        {"id": "bad id", "title": "t"},
        "not json",
        {**GOOD, "id": "a2"},
        {"id": "a3", "title": "t", "tags": "x"},
        {**GOOD, "id": "a4"},
    )
    result = read_articles([path], on_error="skip")
    assert [a.id for a in result.articles] == ["a1", "a2", "a4"]
    assert result.skipped == 3
    assert [(e.line, e.field) for e in result.errors] == [(2, "id"), (3, None), (5, "tags")]


def test_fail_mode_lists_errors_with_place_and_field(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        GOOD,
        {"id": "a2"},
        {"id": "a3", "title": "t", "published_at": "soon"},
    )
    with pytest.raises(CorpusError) as info:
        read_articles([path])
    lines = str(info.value).splitlines()
    assert lines[0] == "2 bad record(s):"
    assert lines[1].startswith(f"  {path}:2: field 'title':")
    assert lines[2] == f"  {path}:3: field 'published_at': 'soon' is not an ISO-8601 date/time"


def test_fail_mode_stops_listing_at_the_cap_even_across_files(tmp_path: Path) -> None:
    paths = [write_jsonl(tmp_path / f"{n}.jsonl", *["[]"] * 15) for n in range(3)]
    with pytest.raises(CorpusError) as info:
        read_articles(paths)
    assert len(info.value.errors) == MAX_REPORTED_ERRORS
    assert "(listing stopped there)" in str(info.value)


def test_corpus_without_tags_reads_fine(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", GOOD, {"id": "a2", "title": "t", "tags": []})
    assert [a.tags for a in read_articles([path]).articles] == [(), ()]


def test_corpus_without_bodies_reads_fine(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl", {"id": "a1", "title": "t1"}, {"id": "a2", "title": "t2"}
    )
    assert [a.body for a in read_articles([path]).articles] == ["", ""]


def test_article_from_mapping_strips_text_and_tags() -> None:
    article = article_from_mapping({"id": "a", "title": "  t ", "tags": [" x ", "", "  "]})
    assert (article.title, article.tags) == ("t", ("x",))


def test_line_separators_inside_text_survive_a_round_trip(tmp_path: Path) -> None:
    article = Article(id="a1", title="Line\u2028separator", body="next\u0085line\x1cfile\u2029end")
    path = tmp_path / "a.jsonl"
    write_articles_jsonl([article], path)
    assert read_articles([path]).articles == [article]


@settings(max_examples=50, deadline=None)
@given(
    title=st.text(min_size=1).filter(lambda s: s.strip() == s and s),
    body=st.text().map(str.strip),
    tags=st.lists(st.text(min_size=1).filter(lambda s: s.strip() == s and s), max_size=4),
)
def test_write_then_read_round_trips(title: str, body: str, tags: list[str]) -> None:
    article = Article(id="x1", title=title, body=body, tags=tuple(tags), extra={"k": [1, "v"]})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.jsonl"
        write_articles_jsonl([article], path)
        assert read_articles([path]).articles == [article]


def test_bad_utf8_after_a_bom_names_its_line_and_file_offset(tmp_path: Path) -> None:
    # Read line by line now: the line number and the byte offset are still the file's own.
    path = tmp_path / "a.jsonl"
    first = codecs.BOM_UTF8 + json.dumps(GOOD).encode() + b"\r\n"
    second = json.dumps({**GOOD, "id": "a2"}).encode() + b"\n"
    third = b'{"id": "a3", "title": "Caf\xe9"}\n'
    path.write_bytes(first + second + third)
    with pytest.raises(CorpusError) as info:
        read_articles([path], on_error="skip")
    offset = len(first) + len(second) + third.index(b"\xe9")
    assert str(info.value).startswith(f"{path}:3: not valid UTF-8 (byte 0xe9 at offset {offset})")


def test_jsonl_keeps_line_separators_inside_strings(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {**GOOD, "title": "One\u2028two\x85three\rfour"})
    path.write_bytes(path.read_bytes().replace(b"\\u2028", "\u2028".encode()))
    [article] = read_articles([path]).articles
    assert article.title == "One\u2028two\x85three\rfour"
