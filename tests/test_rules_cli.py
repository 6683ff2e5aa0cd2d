"""``recs rules``: every subcommand against a real redis-server, the export/import round trip,
bad files (exit 2 naming the file and field) and an unreachable Redis (exit 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from scripts.cli import cli
from service.redis import keys
from service.redis.store import RedisStore
from service.rules.schema import MAX_RULES

DOWN = "redis://127.0.0.1:1/0"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["rules", *args], env=env)


def write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_put_get_list_delete_and_log(redis_url: str, tmp_path: Path) -> None:
    body = write(tmp_path / "rule.json", {"hide": ["a-1"], "scope": {"section": "politics"}})
    done = run("put", str(body), "--id", "takedown", "--by", "jane", "--redis-url", redis_url)
    assert done.exit_code == 0, done.output
    assert "created rule takedown (seq 1)" in done.output
    got = run("get", "takedown", "--redis-url", redis_url)
    rule = json.loads(got.output)
    assert rule["hide"] == ["a-1"] and rule["updated_by"] == "jane" and rule["id"] == "takedown"
    # A rule as `get` prints it can be put back (its id and server fields are taken as given).
    rule["hide"].append("a-2")
    again = run("put", str(write(tmp_path / "edited.json", rule)), "--redis-url", redis_url)
    assert again.exit_code == 0 and "replaced rule takedown (seq 2)" in again.output
    listed = run("list", "--redis-url", redis_url)
    assert "takedown  active  section=politics, hide 2" in listed.output
    as_json = json.loads(run("list", "--json", "--redis-url", redis_url).output)
    assert as_json["seq"] == 2 and as_json["rules"][0]["state"] == "active"
    gone = run("delete", "takedown", "--by", "jane", "--redis-url", redis_url)
    assert gone.exit_code == 0 and "deleted rule takedown (seq 3)" in gone.output
    missing = run("delete", "takedown", "--redis-url", redis_url)
    assert missing.exit_code == 2 and "no rule 'takedown'" in missing.output
    assert run("get", "takedown", "--redis-url", redis_url).exit_code == 2
    log = run("log", "takedown", "--redis-url", redis_url).output.splitlines()
    assert len(log) == 3
    assert "seq 3  delete  takedown  by jane  fields: hide, scope" in log[0]
    assert "seq 2  put     takedown" in log[1] and "fields: hide" in log[1]
    lines = run("log", "--json", "--limit", "1", "--redis-url", redis_url).output.splitlines()
    assert [json.loads(line)["op"] for line in lines] == ["delete"]


def test_by_defaults_to_the_user(redis_url: str, tmp_path: Path) -> None:
    body = write(tmp_path / "rule.json", {"hide_box": True})
    done = run("put", str(body), "--id", "r1", "--redis-url", redis_url, env={"USER": "sam"})
    assert done.exit_code == 0, done.output
    assert json.loads(run("get", "r1", "--redis-url", redis_url).output)["updated_by"] == "sam"
    bad = run("put", str(body), "--id", "r1", "--by", "x" * 65, "--redis-url", redis_url)
    assert bad.exit_code == 2 and "--by" in bad.output


def test_export_import_round_trip(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    document = {
        "rules": {
            "takedown": {"hide": ["a-1"], "note": "legal"},
            "explainer": {
                "scope": {"section": "politics"},
                "pin": [{"id": "a-9", "position": 0}],
                "valid_from": "2026-12-01T06:00:00Z",
                "valid_until": "2026-12-08T00:00:00Z",
            },
        }
    }
    first = run("import", str(write(tmp_path / "rules.json", document)), "--redis-url", redis_url)
    assert first.exit_code == 0, first.output
    assert "2 added, 0 changed, 0 removed, 0 unchanged (seq 1)" in first.output
    exported = tmp_path / "export.json"
    assert run("export", "-o", str(exported), "--redis-url", redis_url).exit_code == 0
    stdout = run("export", "--redis-url", redis_url).output
    assert json.loads(stdout) == json.loads(exported.read_text())
    before = RedisStore(redis_client).stored_rules()
    # The export imports back as it is: nothing changes, not even the counter.
    back = run("import", str(exported), "--redis-url", redis_url)
    assert (
        back.exit_code == 0 and "0 added, 0 changed, 0 removed, 2 unchanged (seq 1)" in back.output
    )
    assert RedisStore(redis_client).stored_rules() == before
    # Edited in git: one rule dropped, one changed; applied as one replacement.
    edited = json.loads(exported.read_text())
    del edited["rules"]["takedown"]
    edited["rules"]["explainer"]["pin"][0]["position"] = 1
    third = run("import", str(write(tmp_path / "e.json", edited)), "--redis-url", redis_url)
    assert "0 added, 1 changed, 1 removed, 0 unchanged (seq 2)" in third.output
    assert sorted(RedisStore(redis_client).stored_rules().rules) == ["explainer"]


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({"rules": {"r1": {"hide": "a-1"}}}, "/rules/r1/hide: must be a list"),
        ({"rules": {"r1": {"max_age_days": 0}}}, "/rules/r1/max_age_days: must be at least 1"),
        ({"rules": {"r 1": {}}}, "/rules/r 1: rule id"),
        ({"rule": {}}, "/rule: unknown field"),
        ("[", "line 1"),
    ],
)
def test_a_bad_import_exits_2_naming_file_and_field(
    redis_url: str, redis_client: Any, tmp_path: Path, content: Any, named: str
) -> None:
    RedisStore(redis_client).replace_rules({"keep": {"hide": ["a-1"]}}, by="t", at="x")
    path = tmp_path / "rules.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        write(path, content)
    done = run("import", str(path), "--redis-url", redis_url)
    assert done.exit_code == 2, done.output
    assert str(path) in done.output and named in done.output, done.output
    assert "Traceback" not in done.output
    assert list(RedisStore(redis_client).stored_rules().rules) == ["keep"]  # untouched


def test_bad_put_files_exit_2(redis_url: str, tmp_path: Path) -> None:
    no_id = run("put", str(write(tmp_path / "a.json", {"hide": ["a-1"]})), "--redis-url", redis_url)
    assert no_id.exit_code == 2 and "--id" in no_id.output
    clash = write(tmp_path / "b.json", {"id": "x", "hide": ["a-1"]})
    differs = run("put", str(clash), "--id", "y", "--redis-url", redis_url)
    assert differs.exit_code == 2 and "differs" in differs.output
    bad = run(
        "put",
        str(write(tmp_path / "c.json", {"pin": [{"id": "a"}]})),
        "--id",
        "r",
        "--redis-url",
        redis_url,
    )
    assert bad.exit_code == 2 and "c.json: /pin/0/position: required" in bad.output
    missing = run("put", str(tmp_path / "none.json"), "--id", "r", "--redis-url", redis_url)
    assert missing.exit_code == 2 and "none.json: no such file" in missing.output
    assert run("get", "bad id", "--redis-url", redis_url).exit_code == 2


def test_redis_down_exits_4(tmp_path: Path) -> None:
    body = write(tmp_path / "rule.json", {"hide": ["a-1"]})
    for args in (
        ("list",),
        ("get", "r1"),
        ("put", str(body), "--id", "r1"),
        ("delete", "r1"),
        ("export",),
        ("import", str(write(tmp_path / "rules.json", {"rules": {}}))),
        ("log",),
    ):
        done = run(*args, "--redis-url", DOWN)
        assert done.exit_code == 4, (args, done.output)
        assert "cannot reach Redis" in done.output


def test_put_into_a_full_rule_set_exits_2(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(
        keys.RULES, mapping={f"r{n}": json.dumps({"id": f"r{n}"}) for n in range(MAX_RULES)}
    )
    body = write(tmp_path / "rule.json", {"hide": ["a-1"]})
    done = run("put", str(body), "--id", "new-one", "--redis-url", redis_url)
    assert done.exit_code == 2 and "the rule set is full" in done.output, done.output
    assert client.hlen(keys.RULES) == MAX_RULES
