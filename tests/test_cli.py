"""The recs train / related / similarity commands through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import SAMPLE_ARTICLES


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
