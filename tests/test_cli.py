"""The recs train / related / similarity commands through click's CliRunner."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from models.artifact import load_model
from scripts.cli import cli
from tests.paths import SAMPLE_ARTICLES


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    result = CliRunner().invoke(
        cli, ["train", "--articles", str(SAMPLE_ARTICLES), "--out", str(out), "--k", "20"]
    )
    assert result.exit_code == 0, result.output
    assert "1,483 articles" in result.output and "coverage@20" in result.output
    return out


def first_ids(n: int) -> list[str]:
    with open(SAMPLE_ARTICLES, encoding="utf-8") as handle:
        return [json.loads(next(handle))["id"] for _ in range(n)]


def test_related_json_lines(model_dir: Path) -> None:
    ids = first_ids(3)
    result = CliRunner().invoke(
        cli, ["related", *ids, "--model", str(model_dir), "--k", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == ids
    for line in lines:
        scores = [n["score"] for n in line["neighbours"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert line["id"] not in {n["id"] for n in line["neighbours"]}


def test_related_all_and_text(model_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["related", "--all", "--model", str(model_dir), "--k", "2", "--json"]
    )
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == 1483
    text = CliRunner().invoke(cli, ["related", first_ids(1)[0], "--model", str(model_dir)])
    assert "BAHIA COCOA REVIEW" in text.output and "  1. " in text.output


def test_related_errors(model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(cli, ["related", "nope", "--model", str(model_dir)])
    assert unknown.exit_code == 2 and "unknown article id(s): nope" in unknown.output
    none = runner.invoke(cli, ["related", "--model", str(model_dir)])
    assert none.exit_code == 2 and "--all" in none.output
    missing = runner.invoke(cli, ["related", "x", "--model", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no such model directory" in missing.output
    assert "Traceback" not in missing.output


def test_similarity_pair_explain_and_pairs(model_dir: Path, tmp_path: Path) -> None:
    a, b, c = first_ids(3)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["similarity", a, b, "--model", str(model_dir), "--explain", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert {"blended", "text", "tags", "shared_tags", "top_terms"} <= set(record)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(f"{a}\t{b}\n{b}\t{a}\n{a}\t{c}\n", encoding="utf-8")
    listed = runner.invoke(cli, ["similarity", "--pairs", str(pairs), "--model", str(model_dir)])
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.output.splitlines()]
    assert [r[:2] for r in rows] == [[a, b], [b, a], [a, c]]
    assert rows[0][2] == rows[1][2]  # symmetric
    assert float(rows[0][2]) == pytest.approx(record["blended"], abs=1e-6)


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    config = root / "config.json"
    config.write_text('{"rerank": false}', encoding="utf-8")
    out = root / "model"
    result = CliRunner().invoke(
        cli,
        ["train", "--articles", str(SAMPLE_ARTICLES), "--out", str(out), "--k", "20"]
        + ["--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("which", ["model_dir", "plain_model_dir"])
def test_similarity_prints_the_score_of_the_stored_list(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    directory = str(request.getfixturevalue(which))
    model = load_model(directory).model
    assert model.rerank_active_ == (which == "model_dir")
    a = first_ids(1)[0]
    (b, first), *_, (c, last) = model.neighbours(a)
    runner = CliRunner()
    text = runner.invoke(cli, ["similarity", a, b, "--model", directory])
    assert text.exit_code == 0, text.output
    assert text.output == f"score {first:.6f}\n"
    explained = runner.invoke(cli, ["similarity", a, c, "--model", directory, "--explain"])
    assert explained.output.startswith(f"score {last:.6f}\nblended ")
    assert ("x latent)" in explained.output) == model.rerank_active_
    record = json.loads(
        runner.invoke(cli, ["similarity", a, c, "--model", directory, "--json"]).output
    )
    assert record["score"] == round(last, 6)
    if model.rerank_active_:
        w = record["rerank_weight"]
        parts = (1 - w) * record["blended"] + w * record["latent"]
        assert record["score"] == pytest.approx(parts, abs=2e-6)
        assert record["score"] != record["blended"]
    else:
        assert record["latent"] is None and record["score"] == record["blended"]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(f"{a}\t{b}\n{a}\t{c}\n", encoding="utf-8")
    listed = runner.invoke(cli, ["similarity", "--pairs", str(pairs), "--model", directory])
    rows = [line.split("\t") for line in listed.output.splitlines()]
    assert [row[-1] for row in rows] == [f"{first:.6f}", f"{last:.6f}"]


def test_similarity_errors(model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.tsv"
    bad.write_text("reuters-1\tnope\n", encoding="utf-8")
    result = runner.invoke(cli, ["similarity", "--pairs", str(bad), "--model", str(model_dir)])
    assert result.exit_code == 2 and "bad.tsv:1: unknown article id 'nope'" in result.output
    one = runner.invoke(cli, ["similarity", "reuters-1", "--model", str(model_dir)])
    assert one.exit_code == 2 and "exactly two" in one.output


def test_train_bad_input_exit_2_and_skip_mode(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        cli, ["train", "--articles", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "m")]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    lines = SAMPLE_ARTICLES.read_text(encoding="utf-8").splitlines()[:30]
    lines.insert(3, '{"id": "bad id!", "title": "x"}')
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    failed = runner.invoke(cli, ["train", "--articles", str(corpus), "--out", str(tmp_path / "m")])
    assert failed.exit_code == 2
    assert "c.jsonl:4: field 'id'" in failed.output
    assert not (tmp_path / "m").exists()
    skipped = runner.invoke(
        cli,
        [
            "train",
            "--articles",
            str(corpus),
            "--out",
            str(tmp_path / "m"),
            "--on-error",
            "skip",
            "--json",
        ],
    )
    assert skipped.exit_code == 0, skipped.output
    summary = json.loads(skipped.output.splitlines()[-1])
    assert summary["articles"] == 30 and summary["skipped"] == 1


def test_train_config_file_and_bad_config(tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"alpha": 0.9, "rerank": False}), encoding="utf-8")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(SAMPLE_ARTICLES.read_text().splitlines()[:50]) + "\n")
    ok = runner.invoke(
        cli,
        [
            "train",
            "--articles",
            str(corpus),
            "--out",
            str(tmp_path / "m"),
            "--config",
            str(config),
            "--k",
            "5",
        ],
    )
    assert ok.exit_code == 0, ok.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["alpha"] == 0.9 and manifest["config"]["k"] == 5
    config.write_text(json.dumps({"alpha": 2, "colour": "red"}), encoding="utf-8")
    bad = runner.invoke(
        cli,
        ["train", "--articles", str(corpus), "--out", str(tmp_path / "n"), "--config", str(config)],
    )
    assert bad.exit_code == 2 and "unknown setting(s) colour" in bad.output


# --- hostile input files: FILE:LINE: reason and exit 2, never a traceback ----------------------

DEEP = "[" * 5000 + "]" * 5000


def assert_bad_input(result: Result, *fragments: str) -> None:
    """Exit 2 through the CLI's error path, the message holding every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture
def hostile_corpus(tmp_path: Path) -> Path:
    """30 good articles, then a deep line, a record with a deep field, a 5,000-digit number and
    a lone surrogate."""
    lines = SAMPLE_ARTICLES.read_text(encoding="utf-8").splitlines()[:30]
    lines += [
        DEEP,
        '{"id": "d1", "title": "t", "meta": ' + DEEP + "}",
        '{"id": "d2", "title": "t", "n": ' + "9" * 5000 + "}",
        '{"id": "d3", "title": "half of an emoji \\ud83d", "body": "b"}',
    ]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


HOSTILE_REASONS = (
    "h.jsonl:31: invalid JSON (nested deeper than 64 levels at column 65)",
    "h.jsonl:32: invalid JSON (nested deeper than 64 levels at column 99)",
    "h.jsonl:33: invalid JSON (number with more than 4300 digits at column 33)",
    "h.jsonl:34: invalid JSON (lone surrogate \\ud83d in a string at column 41",
)


def test_train_reports_hostile_json_lines_and_skips_them_on_request(
    hostile_corpus: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    out = str(tmp_path / "m")
    failed = runner.invoke(cli, ["train", "--articles", str(hostile_corpus), "--out", out])
    assert_bad_input(failed, "4 bad record(s)", *HOSTILE_REASONS)
    assert not Path(out).exists()
    skipped = runner.invoke(
        cli,
        ["train", "--articles", str(hostile_corpus), "--out", out, "--on-error", "skip", "--json"],
    )
    assert skipped.exit_code == 0, skipped.output
    summary = json.loads(skipped.output.splitlines()[-1])
    assert summary["articles"] == 30 and summary["skipped"] == 4


def test_upsert_and_evaluate_report_hostile_json_lines(
    model_dir: Path, hostile_corpus: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    upsert = runner.invoke(cli, ["upsert", "--articles", str(hostile_corpus), "--model", str(copy)])
    assert_bad_input(upsert, *HOSTILE_REASONS)
    evaluate = runner.invoke(
        cli, ["evaluate", "--model", str(model_dir), "--articles", str(hostile_corpus)]
    )
    assert_bad_input(evaluate, *HOSTILE_REASONS)


def test_train_reads_csv_cells_longer_than_the_csv_module_default(tmp_path: Path) -> None:
    records = [json.loads(line) for line in SAMPLE_ARTICLES.read_text().splitlines()[:30]]
    records[3]["body"] += " cocoa" * 40_000  # 240,000 more characters; csv's default is 131,072
    corpus = tmp_path / "c.csv"
    with open(corpus, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "body"])
        writer.writerows([r["id"], r["title"], r["body"]] for r in records)
    result = CliRunner().invoke(
        cli, ["train", "--articles", str(corpus), "--out", str(tmp_path / "m"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["articles"] == 30


def test_config_alias_and_pairs_files_report_file_line_reason(
    model_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    corpus = str(SAMPLE_ARTICLES)
    out = str(tmp_path / "m")
    config = tmp_path / "config.json"
    config.write_text('{\n  "alpha": 0.5,\n  "tag_aliases": ' + DEEP + "\n}", encoding="utf-8")
    deep = runner.invoke(cli, ["train", "--articles", corpus, "--out", out, "--config", config])
    assert_bad_input(deep, "config.json:3: invalid JSON (nested deeper than 64 levels")
    config.write_text('{\n  "k": ' + "1" * 5000 + "\n}", encoding="utf-8")
    digits = runner.invoke(cli, ["train", "--articles", corpus, "--out", out, "--config", config])
    assert_bad_input(digits, "config.json:2: invalid JSON (number with more than 4300 digits")
    folder = runner.invoke(cli, ["train", "--articles", corpus, "--out", out, "--config", tmp_path])
    assert_bad_input(folder, f"config file {tmp_path}: cannot read")
    aliases = runner.invoke(
        cli, ["train", "--articles", corpus, "--out", out, "--tag-aliases", tmp_path]
    )
    assert_bad_input(aliases, f"tag alias file {tmp_path}: cannot read")
    assert not Path(out).exists()
    pairs = runner.invoke(cli, ["similarity", "--model", model_dir, "--pairs", tmp_path])
    assert_bad_input(pairs, f"{tmp_path}: cannot read")


def test_a_manifest_naming_a_foreign_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["../../etc/hostname"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(cli, ["related", "reuters-1", "--model", copy])
    assert_bad_input(
        result, f"{copy}/manifest.json: 'files' entry '../../etc/hostname' is not a model file"
    )
    (copy / "manifest.json").write_text('{"format": ' + DEEP + "}")
    result = runner.invoke(cli, ["related", "reuters-1", "--model", copy])
    assert_bad_input(
        result, f"{copy}/manifest.json:1: invalid JSON (nested deeper than 64 levels at column 75)"
    )
