"""The publish/rollback/versions/retrain commands, run through click against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import redis
from click.testing import CliRunner, Result

from scripts.cli import cli
from scripts.connection import redact
from scripts.retrain_cmd import check_new_model, prune_model_dirs
from service.redis import keys, publish
from service.redis.store import RedisStore
from service.redis.versions import current_version, list_versions
from tests.paths import SAMPLE_ARTICLES

# A subset keeps each training to a second or two; the 10% cut of it is the "broken export".
SUBSET = 600


def make_group() -> click.Group:
    group = click.Group("recs")
    for name in ("train", "publish", "rollback", "versions", "retrain"):
        group.add_command(cli.commands[name])
    return group


def run(*args: str) -> Result:
    return CliRunner().invoke(make_group(), list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    lines = SAMPLE_ARTICLES.read_text(encoding="utf-8").splitlines(keepends=True)[:SUBSET]
    out = {"full": root / "full.jsonl", "cut": root / "cut.jsonl", "empty": root / "empty.jsonl"}
    out["full"].write_text("".join(lines), encoding="utf-8")
    out["cut"].write_text("".join(lines[: len(lines) // 10]), encoding="utf-8")
    out["empty"].write_text("", encoding="utf-8")
    # Re-ranking costs most of the fit time and changes nothing about what is tested here.
    out["config"] = root / "fast.json"
    out["config"].write_text(json.dumps({"rerank": False}), encoding="utf-8")
    return out


def retrain(export: Path, root: Path, url: str, *extra: str) -> Result:
    config = export.with_name("fast.json")
    if "--config" not in extra:
        extra = (*extra, "--config", str(config))
    return run(
        "retrain", "--articles", str(export), "--model-root", str(root), "--redis-url", url, *extra
    )


def one_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def model_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


@pytest.mark.slow
def test_retrain_publishes_and_refuses_broken_exports(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, exports: dict[str, Path]
) -> None:
    root = tmp_path / "models"
    first = retrain(exports["full"], root, redis_url)
    assert first.exit_code == 0, first.output
    line = one_line(first)
    assert line.startswith("retrain OK: published ")
    assert f"({SUBSET:,} articles, coverage " in line and "was none) in " in line
    live = current_version(redis_client)
    assert live is not None and model_dirs(root) == [live]
    assert f"published {live} " in line

    cut = retrain(exports["cut"], root, redis_url)
    assert cut.exit_code == 3
    line = one_line(cut)
    assert line.startswith("retrain REFUSED: corpus shrank 90.0% (60 vs 600 live; limit 20%);")
    assert f"live version {live} untouched" in line
    assert current_version(redis_client) == live
    store = RedisStore(redis_client)
    neighbours = store.neighbours(live, "reuters-1")
    assert neighbours is not None and len(neighbours) > 0
    # The refused model is kept for a look, unpublished.
    assert len(model_dirs(root)) == 2
    assert [r.version for r in list_versions(redis_client)] == [live]

    empty = retrain(exports["empty"], root, redis_url)
    assert empty.exit_code == 3
    line = one_line(empty)
    assert line.startswith("retrain REFUSED: cannot train on the export: no valid articles in")
    assert line.endswith(f"live version {live} untouched")
    assert current_version(redis_client) == live
    assert not [p for p in root.iterdir() if p.name.startswith(".retrain-")]

    forced = retrain(exports["cut"], root, redis_url, "--force")
    assert forced.exit_code == 0, forced.output
    line = one_line(forced)
    assert line.startswith("retrain OK: published ") and "was 600" in line
    assert "(forced: corpus shrank 90.0%" in line
    new = current_version(redis_client)
    assert new != live
    assert [r.version for r in list_versions(redis_client)] == [new, live]
    assert publish.rollback(redis_client) == (new, live)


@pytest.mark.slow
def test_retrain_refuses_a_coverage_drop(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, exports: dict[str, Path]
) -> None:
    root = tmp_path / "models"
    assert retrain(exports["full"], root, redis_url).exit_code == 0
    live = current_version(redis_client)
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"min_score": 0.3, "rerank": False}))
    result = retrain(exports["full"], root, redis_url, "--config", str(strict))
    assert result.exit_code == 3, result.output
    assert one_line(result).startswith("retrain REFUSED: coverage fell ")
    assert current_version(redis_client) == live


@pytest.mark.slow
def test_retrain_prunes_old_model_directories(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, exports: dict[str, Path]
) -> None:
    root = tmp_path / "models"
    versions: list[str] = []
    for k in ("10", "11", "12"):
        result = retrain(exports["full"], root, redis_url, "--k", k, "--keep", "2")
        assert result.exit_code == 0, result.output
        versions.append(str(current_version(redis_client)))
    assert model_dirs(root) == sorted(versions[1:])
    assert [r.version for r in list_versions(redis_client)] == versions[:0:-1]


def test_retrain_with_unreachable_redis_trains_nothing(
    tmp_path: Path, exports: dict[str, Path]
) -> None:
    root = tmp_path / "models"
    result = retrain(exports["full"], root, "redis://127.0.0.1:1/0")
    assert result.exit_code == 4
    line = one_line(result)
    assert line.startswith("retrain FAILED: cannot reach Redis at redis://127.0.0.1:1/0:")
    assert line.endswith("; nothing trained")
    assert not root.exists() or model_dirs(root) == []


@pytest.mark.slow
def test_retrain_that_cannot_publish_leaves_the_live_version(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, exports: dict[str, Path]
) -> None:
    root = tmp_path / "models"
    assert retrain(exports["full"], root, redis_url).exit_code == 0
    live = current_version(redis_client)
    keys_before = redis_client.dbsize()
    redis_client.set(keys.PUBLISH_LOCK, "a-stuck-publisher")
    result = retrain(exports["full"], root, redis_url, "--k", "7")
    assert result.exit_code == 3
    line = one_line(result)
    assert line.startswith("retrain FAILED: publish refused: another publish or rollback")
    assert "new model kept unpublished at " in line
    assert current_version(redis_client) == live
    assert redis_client.dbsize() == keys_before + 1  # the lock key, nothing else
    assert redis_client.zcard(keys.PUBLISHING) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, exports: dict[str, Path]) -> list[Path]:
    root = tmp_path_factory.mktemp("trained")
    dirs = []
    for k in ("8", "9"):
        out = root / f"k{k}"
        config = str(exports["config"])
        result = run(
            "train",
            "--articles",
            str(exports["full"]),
            "--out",
            str(out),
            "--k",
            k,
            "--config",
            config,
        )
        assert result.exit_code == 0, result.output
        dirs.append(out)
    return dirs


def test_publish_versions_rollback_commands(
    redis_url: str, redis_client: redis.Redis, trained: list[Path]
) -> None:
    assert one_line(run("versions", "--redis-url", redis_url)) == "no published versions"
    first = run("publish", "--model", str(trained[0]), "--redis-url", redis_url)
    assert first.exit_code == 0, first.output
    v1 = current_version(redis_client)
    assert one_line(first).startswith(f"published {v1}: 600 articles in ")
    second = run("publish", "--model", str(trained[1]), "--redis-url", redis_url)
    v2 = str(current_version(redis_client))
    assert second.exit_code == 0 and f"previous {v1}" in one_line(second)

    listing = run("versions", "--redis-url", redis_url)
    lines = listing.output.splitlines()
    assert lines[0].split() == ["VERSION", "BUILT", "PUBLISHED", "ARTICLES", "K"]
    assert lines[1].startswith(f"* {v2} ") and lines[1].split()[-2:] == ["600", "9"]
    assert lines[2].startswith(f"  {v1} ")
    as_json = run("versions", "--redis-url", redis_url, "--json").output.splitlines()
    rows = [json.loads(line) for line in as_json]
    assert [(r["version"], r["current"], r["articles"]) for r in rows] == [
        (v2, True, 600),
        (v1, False, 600),
    ]

    back = run("rollback", "--redis-url", redis_url)
    assert back.exit_code == 0 and one_line(back) == f"rolled back: {v1} is live (was {v2})"
    again = run("rollback", "--redis-url", redis_url)
    assert again.exit_code == 3
    assert (
        one_line(again) == f"error: rollback refused: no earlier version than {v1} to roll back to"
    )
    forward = run("rollback", "--redis-url", redis_url, "--to", v2)
    assert forward.exit_code == 0 and current_version(redis_client) == v2
    bad = run("rollback", "--redis-url", redis_url, "--to", "a:b")
    assert bad.exit_code == 2 and "invalid version id" in one_line(bad)


def test_redis_url_comes_from_the_environment(
    redis_url: str, redis_client: redis.Redis, trained: list[Path]
) -> None:
    env = {"RECS_REDIS_URL": redis_url}
    result = CliRunner().invoke(make_group(), ["publish", "--model", str(trained[0])], env=env)
    assert result.exit_code == 0, result.output
    assert current_version(redis_client) is not None
    listing = CliRunner().invoke(make_group(), ["versions"], env=env)
    assert listing.exit_code == 0 and listing.output.splitlines()[1].startswith("* ")


def test_publish_to_unreachable_redis_is_one_clear_line(trained: list[Path]) -> None:
    result = run("publish", "--model", str(trained[0]), "--redis-url", "redis://127.0.0.1:1")
    assert result.exit_code == 4
    line = one_line(result)
    assert line.startswith("error: cannot reach Redis at redis://127.0.0.1:1: ")
    assert "Traceback" not in result.output


def test_publish_with_a_held_lock_is_refused(
    redis_url: str, redis_client: redis.Redis, trained: list[Path]
) -> None:
    redis_client.set(keys.PUBLISH_LOCK, "other")
    result = run("publish", "--model", str(trained[0]), "--redis-url", redis_url)
    assert result.exit_code == 3
    assert one_line(result).startswith("error: publish refused: another publish or rollback")
    assert current_version(redis_client) is None


def test_publish_after_train_prints_one_line(
    redis_url: str, redis_client: redis.Redis, trained: list[Path]
) -> None:
    from models.artifact import load_model
    from scripts.publish_cmd import publish_after_train

    loaded = load_model(trained[0])
    command = click.Command("t", callback=lambda: publish_after_train(loaded, redis_url))
    result = CliRunner().invoke(command)
    assert result.exit_code == 0, result.output
    assert one_line(result).startswith(f"published {loaded.version}: 600 articles")
    assert current_version(redis_client) == loaded.version


def test_check_new_model() -> None:
    live = {"articles": 1000, "coverage": 0.95}
    assert check_new_model({"articles": 800, "coverage": 0.95}, live, 0.2, 0.1) is None
    assert check_new_model({"articles": 799, "coverage": 0.95}, live, 0.2, 0.1) == (
        "corpus shrank 20.1% (799 vs 1,000 live; limit 20%)"
    )
    assert check_new_model({"articles": 5000, "coverage": 0.80}, live, 0.2, 0.1) == (
        "coverage fell 15.0 points (80.0% vs 95.0% live; limit 10 points)"
    )
    assert check_new_model({"articles": 1, "coverage": 0.0}, None, 0.2, 0.1) is None


def test_prune_model_dirs_keeps_newest_and_protected(tmp_path: Path) -> None:
    assert prune_model_dirs(tmp_path, 1, set()) == []
    (tmp_path / "notes").mkdir()  # not a model directory: never touched
    assert prune_model_dirs(tmp_path, 1, set()) == []
    assert (tmp_path / "notes").exists()


def test_redact_hides_passwords() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://user:s3cret@host/1") == "redis://user:***@host/1"
    assert redact("redis://host:6379") == "redis://host:6379"
