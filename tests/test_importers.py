"""The Reuters-21578 and MIND importers and the ``import`` command, on real sample files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from models.importers import ImportStats, iter_mind, iter_reuters, read_mind_behaviors
from models.importers.reuters import _strip_signature
from models.records import CorpusError, RecordError, read_articles, write_articles_jsonl
from scripts.import_cmd import import_group

DATA = Path(__file__).parent / "data"
REUTERS = DATA / "reuters"
MIND_NEWS = DATA / "mind" / "news.tsv"
MIND_BEHAVIORS = DATA / "mind" / "behaviors.tsv"
DOCTYPE = '<!DOCTYPE lewis SYSTEM "lewis.dtd">\n'

# NEWID 101 of reut2-000.sgm, shortened: an UNPROC table with neither TITLE nor BODY.
UNPROC_DOC = """\
<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="5644" NEWID="101">
<DATE>26-FEB-1987 16:35:24.57</DATE>
<TOPICS><D>money-supply</D></TOPICS>
<PLACES><D>usa</D></PLACES>
<PEOPLE></PEOPLE>
<ORGS></ORGS>
<EXCHANGES></EXCHANGES>
<COMPANIES></COMPANIES>
<UNKNOWN>
&#5;&#5;&#5;RM A
&#22;&#22;&#1;f0036&#31;reute
b f BC--FEDERAL-RESERVE-MONE   02-26 0092</UNKNOWN>
<TEXT TYPE="UNPROC">&#2;
FEDERAL RESERVE MONEY SUPPLY REPORT - FEB 26
    One Week Ended Feb 16
 M-1.........................736.7 up.......2.1

 Reuter
&#3;

</TEXT>
</REUTERS>
"""


def sample_docs() -> list[str]:
    """The 60 ``<REUTERS>`` documents of the sample file, as text."""
    text = (REUTERS / "reut2-000.sgm").read_bytes().decode("latin-1")
    return re.findall(r"<REUTERS .*?</REUTERS>\n", text, re.S)


def write_sgm(folder: Path, *docs: str, name: str = "reut2-000.sgm") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes((DOCTYPE + "".join(docs)).encode("latin-1"))
    return folder


def news_rows() -> list[str]:
    return MIND_NEWS.read_text(encoding="utf-8").splitlines()


# --- Reuters ----------------------------------------------------------------------------------


def test_reuters_sample_first_document() -> None:
    first = next(iter_reuters(REUTERS))
    assert first.id == "reuters-1"
    assert first.title == "BAHIA COCOA REVIEW"
    assert first.tags == ("el-salvador", "usa", "uruguay")
    assert first.extra["topics"] == ["cocoa"]
    assert first.extra["lewissplit"] == "TRAIN"
    assert first.published_at == "1987-02-26T15:01:01Z"
    assert first.body.startswith("Showers continued throughout the week in\nthe Bahia cocoa zone")
    # The " Reuter" signature and the &#3; end-of-story mark are gone.
    assert first.body.endswith("carnival which ends midday on February 27.")
    assert (first.section, first.url) == ("", "")


def test_reuters_sample_counts_and_known_documents() -> None:
    stats = ImportStats()
    articles = {a.id: a for a in iter_reuters(REUTERS, stats=stats)}
    assert len(articles) == 60
    assert (stats.documents, stats.imported, stats.skipped_empty) == (60, 60, 0)
    assert (stats.without_body, stats.with_tags) == (2, 59)
    assert sum(bool(a.extra["topics"]) for a in articles.values()) == 35
    # &lt; is decoded.
    assert articles["reuters-2"].title == "STANDARD OIL <SRD> TO FORM FINANCIAL UNIT"
    # PEOPLE and ORGS values are tags too, kept as given.
    assert articles["reuters-28"].tags == ("usa", "reagan")
    assert articles["reuters-42"].tags == ("uk", "ico-coffee")
    assert articles["reuters-42"].extra["topics"] == ["coffee"]
    # A TYPE="BRIEF" story: all in the title, no body, no places.
    brief = articles["reuters-30"]
    assert brief.title.startswith("ASSETS OF MONEY MARKET MUTUAL FUNDS ROSE 720.4 MLN DLRS")
    assert (brief.body, brief.tags, brief.extra["topics"]) == ("", (), ["money-supply"])


def test_reuters_topics_never_reach_model_input() -> None:
    for article in iter_reuters(REUTERS):
        assert not set(article.extra["topics"]) & set(article.tags)
        assert article.section == ""
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", article.title + article.body)
        assert "&#" not in article.body and "&lt;" not in article.title


def test_reuters_articles_round_trip_through_jsonl(tmp_path: Path) -> None:
    articles = list(iter_reuters(REUTERS))
    write_articles_jsonl(articles, tmp_path / "r.jsonl")
    assert read_articles([tmp_path / "r.jsonl"]).articles == articles


def test_reuters_skips_documents_without_title_or_body(tmp_path: Path) -> None:
    docs = sample_docs()
    folder = write_sgm(tmp_path / "r", docs[0], UNPROC_DOC, docs[1])
    stats = ImportStats()
    assert [a.id for a in iter_reuters(folder, stats=stats)] == ["reuters-1", "reuters-2"]
    assert (stats.documents, stats.imported, stats.skipped_empty, stats.skipped) == (3, 2, 1, 1)


def test_reuters_reads_latin1_and_all_files_in_name_order(tmp_path: Path) -> None:
    docs = sample_docs()
    folder = write_sgm(tmp_path / "r", docs[1], name="reut2-001.sgm")
    write_sgm(folder, docs[0].replace("Comissaria Smith", "Comissária Smith"))
    (folder / "notes.txt").write_text("not part of the collection", encoding="utf-8")
    first, second = iter_reuters(folder)
    assert (first.id, second.id) == ("reuters-1", "reuters-2")
    assert "Comissária Smith" in first.body


def test_reuters_corrupt_date_is_left_empty_and_counted(tmp_path: Path) -> None:
    doc = re.sub(r"<DATE>.*?</DATE>", "<DATE>31-MAR-1987 605:12:19.12</DATE>", sample_docs()[0])
    stats = ImportStats()
    [article] = iter_reuters(write_sgm(tmp_path / "r", doc), stats=stats)
    assert article.published_at is None
    assert stats.bad_dates == 1


def test_reuters_date_with_wire_noise_and_padding(tmp_path: Path) -> None:
    doc = re.sub(
        r"<DATE>.*?</DATE>", "<DATE> 3-MAR-1987  09:15:05.40&#5;&#5;F</DATE>", sample_docs()[0]
    )
    [article] = iter_reuters(write_sgm(tmp_path / "r", doc))
    assert article.published_at == "1987-03-03T09:15:05Z"


@pytest.mark.parametrize(
    ("ending", "kept"),
    [
        ("said.\n Reuter", "said."),
        ("said.\n REUTER", "said."),
        ("said.\nREUTER\n Reuter", "said."),
        ("dlrs.\n REUTER...", "dlrs."),
        ("dlrs.\nREUTER^M", "dlrs."),
        ("NIL. REUTER11:43/VB", "NIL."),
        ("statement.\n REUTER TAW", "statement."),
        ("Biwott.\n Reuter4", "Biwott."),
        ("Noranda said. Reuter", "Noranda said."),
        ("the spokesman told Reuters.", "the spokesman told Reuters."),
        ("said Daimler chief Edzard Reuter", "said Daimler chief Edzard Reuter"),
    ],
)
def test_reuters_signature_stripping(ending: str, kept: str) -> None:
    assert _strip_signature(f"Text.\n{ending}\n") == f"Text.\n{kept}"


def test_reuters_missing_directory() -> None:
    with pytest.raises(CorpusError, match="no such directory"):
        iter_reuters(DATA / "no-such-dir")


def test_reuters_path_is_a_file() -> None:
    with pytest.raises(CorpusError, match="not a directory"):
        iter_reuters(REUTERS / "reut2-000.sgm")


def test_reuters_directory_without_sgm_files() -> None:
    with pytest.raises(CorpusError, match=r"no reut2-\*\.sgm files"):
        iter_reuters(DATA / "mind")


def test_reuters_bad_newid_names_file_and_line(tmp_path: Path) -> None:
    docs = sample_docs()
    folder = write_sgm(tmp_path / "r", docs[0], docs[1].replace('NEWID="2"', 'NEWID="two"'))
    with pytest.raises(RecordError) as info:
        list(iter_reuters(folder))
    error = info.value
    assert (error.source, error.field) == (str(folder / "reut2-000.sgm"), "id")
    assert error.line == 2 + docs[0].count("\n")
    assert "NEWID 'two' is not a number" in str(error)


def test_reuters_skip_mode_collects_bad_documents(tmp_path: Path) -> None:
    docs = sample_docs()
    unclosed = docs[2].replace("</REUTERS>\n", "")
    folder = write_sgm(
        tmp_path / "r", docs[0], docs[1].replace(' NEWID="2"', ""), unclosed, docs[3]
    )
    stats = ImportStats()
    articles = list(iter_reuters(folder, on_error="skip", stats=stats))
    assert [a.id for a in articles] == ["reuters-1", "reuters-4"]
    assert [e.reason for e in stats.errors] == [
        "NEWID is missing",
        "<REUTERS> document has no closing </REUTERS>",
    ]


def test_reuters_duplicate_newid_names_both_places(tmp_path: Path) -> None:
    docs = sample_docs()
    folder = write_sgm(tmp_path / "r", docs[0], name="reut2-000.sgm")
    write_sgm(folder, docs[0], name="reut2-001.sgm")
    with pytest.raises(RecordError, match=r"reut2-001\.sgm:2: .*first at .*reut2-000\.sgm:2"):
        list(iter_reuters(folder))


# --- MIND -------------------------------------------------------------------------------------


def test_mind_sample_known_rows() -> None:
    stats = ImportStats()
    articles = {a.id: a for a in iter_mind(MIND_NEWS, stats=stats)}
    assert (stats.documents, stats.imported, stats.without_body) == (80, 80, 6)
    first = articles["N34700"]
    assert first.title.startswith("New Florida Majority celebrates grand opening")
    assert first.body.startswith("As music blasted through the Fort Lauderdale plaza")
    assert first.section == "news"
    assert first.url == "https://assets.msn.com/labs/mind/AAJte4f.html"
    # Labels from title and abstract entities, each once, then the subcategory.
    assert first.tags == ("Fort Lauderdale, Florida", "Caribbean", "newspolitics")
    assert first.extra == {"subcategory": "newspolitics"}
    assert first.published_at is None
    # Empty TitleEntities "[]": tags come from the abstract only.
    assert articles["N35354"].tags == ("NASCAR", "racing")
    assert articles["N16278"].tags == (
        "Marine Corps Marathon",
        "Silver Spring, Maryland",
        "more_sports",
    )
    # A row with an empty abstract is a title-only article.
    assert articles["N61309"].body == ""


def test_mind_malformed_entities_mean_no_entity_tags(tmp_path: Path) -> None:
    cells = news_rows()[0].split("\t")
    cells[6], cells[7] = '[{"Label": "Fort', '{"Label": "not a list"}'
    path = tmp_path / "news.tsv"
    path.write_text("\t".join(cells) + "\n", encoding="utf-8")
    stats = ImportStats()
    [article] = iter_mind(path, stats=stats)
    assert article.tags == ("newspolitics",)
    assert stats.bad_entities == 2


def test_mind_bad_rows_fail_with_file_line_and_field(tmp_path: Path) -> None:
    rows = news_rows()[:3]
    cells = rows[1].split("\t")
    cells[3] = cells[4] = ""
    path = tmp_path / "news.tsv"
    path.write_text("\n".join([rows[0], "\t".join(cells), rows[2]]) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as info:
        list(iter_mind(path))
    assert str(info.value).startswith(f"{path}:2: field 'title': title and body are both empty")


def test_mind_skip_mode(tmp_path: Path) -> None:
    rows = news_rows()[:4]
    short = "\t".join(rows[1].split("\t")[:5])
    bad_id = "N 1" + rows[2][rows[2].index("\t") :]
    path = tmp_path / "news.tsv"
    path.write_text("\n".join([rows[0], short, bad_id, rows[3], rows[0]]) + "\n", encoding="utf-8")
    stats = ImportStats()
    articles = list(iter_mind(path, on_error="skip", stats=stats))
    assert [a.id for a in articles] == ["N34700", rows[3].split("\t")[0]]
    assert [(e.line, e.field) for e in stats.errors] == [(2, None), (3, "id"), (5, "id")]
    assert "expected 8 tab-separated columns" in stats.errors[0].reason
    assert f"first at {path}:1" in stats.errors[2].reason


def test_mind_missing_file_directory_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        iter_mind(tmp_path / "news.tsv")
    with pytest.raises(CorpusError, match="is a directory"):
        iter_mind(tmp_path)
    path = tmp_path / "latin1.tsv"
    path.write_bytes(news_rows()[0].encode() + b"\nN1\tnews\tx\tCaf\xe9\t\t\t[]\t[]\n")
    with pytest.raises(CorpusError, match=r"latin1\.tsv:2: not valid UTF-8"):
        iter_mind(path)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty file"):
        iter_mind(empty)


def test_mind_behaviors_sample() -> None:
    impressions = read_mind_behaviors(MIND_BEHAVIORS)
    assert len(impressions) == 200
    first = impressions[0]
    assert (first.impression_id, first.user_id, first.time) == (
        "100643",
        "U35841",
        "2019-11-09T18:42:51Z",
    )
    assert len(first.history) == 21
    assert first.history[:2] == ["N138", "N49223"]
    assert first.impressions[:2] == [("N50329", False), ("N11853", False)]
    assert first.clicked == ["N59852", "N33981", "N31300", "N38330"]
    assert {i.impression_id for i in impressions if not i.history} == {"137805", "113724"}
    # Every sampled impression mentions at least one of the sampled news articles.
    news_ids = {a.id for a in iter_mind(MIND_NEWS)}
    for impression in impressions:
        shown = {news_id for news_id, _ in impression.impressions}
        assert news_ids & (set(impression.history) | shown)


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [(2, "2019-11-09 18:42", "time"), (4, "N1-1 N2-2", "impressions"), (1, "", "user_id")],
)
def test_mind_behaviors_bad_rows(tmp_path: Path, column: int, value: str, field: str) -> None:
    rows = MIND_BEHAVIORS.read_text(encoding="utf-8").splitlines()[:3]
    cells = rows[1].split("\t")
    cells[column] = value
    path = tmp_path / "behaviors.tsv"
    path.write_text("\n".join([rows[0], "\t".join(cells), rows[2]]) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as info:
        read_mind_behaviors(path)
    assert (info.value.line, info.value.field) == (2, field)
    stats = ImportStats()
    assert len(read_mind_behaviors(path, on_error="skip", stats=stats)) == 2
    assert (stats.documents, stats.imported, len(stats.errors)) == (3, 2, 1)


# --- the import command -----------------------------------------------------------------------


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(import_group, [str(arg) for arg in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def test_cli_reuters(tmp_path: Path) -> None:
    out = tmp_path / "reuters.jsonl"
    code, stderr = run("reuters", REUTERS, "-o", out)
    assert code == 0, stderr
    assert re.fullmatch(
        rf"imported 60 articles \(2 without body\) -> {re.escape(str(out))} in \d+\.\d s\n", stderr
    )
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert (first["id"], first["title"], first["topics"]) == (
        "reuters-1",
        "BAHIA COCOA REVIEW",
        ["cocoa"],
    )
    assert len(read_articles([out]).articles) == 60


def test_cli_reuters_sample_filters(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    code, stderr = run(
        "reuters", REUTERS, "--with-body", "--with-topics", "--every", "2", "-o", out
    )
    assert code == 0, stderr
    assert "imported 17 articles (0 without body; kept of 60 by --with-body --with-topics" in stderr
    articles = read_articles([out]).articles
    assert articles[0].id == "reuters-1"
    assert all(a.body and a.extra["topics"] for a in articles)


def test_cli_mind(tmp_path: Path) -> None:
    out = tmp_path / "mind.jsonl"
    code, stderr = run("mind", MIND_NEWS, "-o", out)
    assert code == 0, stderr
    assert stderr.startswith("imported 80 articles (6 without body) -> ")
    first = read_articles([out]).articles[0]
    assert (first.id, first.section, first.extra["subcategory"]) == (
        "N34700",
        "news",
        "newspolitics",
    )


def test_cli_missing_directory_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code, stderr = run("reuters", tmp_path / "missing", "-o", out)
    assert code == 2
    assert stderr == f"error: {tmp_path / 'missing'}: no such directory\n"
    assert not out.exists()


def test_cli_bad_row_exits_2_and_keeps_old_output(tmp_path: Path) -> None:
    news = tmp_path / "news.tsv"
    news.write_text(news_rows()[0] + "\nN2\tnews\tonly three\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("previous corpus\n", encoding="utf-8")
    code, stderr = run("mind", news, "-o", out)
    assert code == 2
    assert stderr.startswith(f"error: {news}:2: expected 8 tab-separated columns")
    assert out.read_text(encoding="utf-8") == "previous corpus\n"
    # No partial file is left behind.
    assert set(tmp_path.iterdir()) == {news, out}


def test_cli_skip_mode_reports_skipped_rows(tmp_path: Path) -> None:
    news = tmp_path / "news.tsv"
    news.write_text(news_rows()[0] + "\nN2\tnews\tonly three\n", encoding="utf-8")
    code, stderr = run("mind", news, "--on-error", "skip", "-o", tmp_path / "out.jsonl")
    assert code == 0
    summary, detail = stderr.splitlines()
    assert summary.endswith("; skipped 1 bad record(s)")
    assert detail.startswith(f"  skipped {news}:2: expected 8")


def test_cli_unwritable_output_exits_2(tmp_path: Path) -> None:
    code, stderr = run("mind", MIND_NEWS, "-o", tmp_path / "no-dir" / "out.jsonl")
    assert code == 2
    assert stderr.startswith("error: cannot write ") and "No such file or directory" in stderr
