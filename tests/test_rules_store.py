"""Editorial rules in Redis and in a rules file: atomic writes, the audit log, import,
survival across publish/rollback/prune, the per-process cache and outages (real redis-server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from service.redis import keys, publish, retention
from service.redis.store import RedisStore
from service.rules.file import RulesFile, RulesFileError
from service.rules.schema import stored_rule
from service.store.base import EMPTY_RULES, StoreUnavailable
from service.store.rules_cache import RulesCache
from tests.service_fixtures import corpus_file

AT = "2026-12-04T10:00:00Z"


def rule(rule_id: str, **body: Any) -> dict[str, Any]:
    return stored_rule(rule_id, body, by="tester", at=AT)


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisStore:
    return RedisStore(redis_client, rules_ttl=0)


def test_put_stores_rule_counter_and_log_together(store: RedisStore) -> None:
    assert store.stored_rules() == EMPTY_RULES
    first = store.put_rule(rule("r1", hide=["a-1"]))
    assert first.seq == 1 and first.before is None
    second = store.put_rule(rule("r1", hide=["a-2"], note="edited"))
    assert second.seq == 2 and second.before == rule("r1", hide=["a-1"])
    found = store.stored_rules()
    assert found.seq == 2 and found.rules == {"r1": rule("r1", hide=["a-2"], note="edited")}
    assert list(found.rules["r1"])[0] == "id"
    history = store.rule_history("r1", 10)
    assert [(e["seq"], e["op"], e["by"], e["at"]) for e in history] == [
        (2, "put", "tester", AT),
        (1, "put", "tester", AT),
    ]
    assert history[0]["before"] == rule("r1", hide=["a-1"])
    assert history[0]["after"] == rule("r1", hide=["a-2"], note="edited")
    assert history[1]["before"] is None


def test_delete_logs_the_rule_it_removed(store: RedisStore) -> None:
    store.put_rule(rule("r1", hide_box=True))
    assert store.delete_rule("nope", by="x", at=AT) is None
    assert store.stored_rules().seq == 1  # nothing deleted: no bump, no log entry
    gone = store.delete_rule("r1", by="editor-2", at=AT)
    assert gone is not None and gone.seq == 2 and gone.before == rule("r1", hide_box=True)
    assert store.stored_rules().rules == {}
    latest = store.rule_history("r1", 1)
    assert latest == [
        {
            "seq": 2,
            "op": "delete",
            "id": "r1",
            "by": "editor-2",
            "at": AT,
            "before": rule("r1", hide_box=True),
            "after": None,
        }
    ]


def test_history_is_newest_first_bounded_and_per_rule(store: RedisStore) -> None:
    for n in range(30):
        store.put_rule(rule(f"r{n % 3}", max_age_days=n + 1))
    ones = store.rule_history("r1", 5)
    assert [e["after"]["max_age_days"] for e in ones] == [29, 26, 23, 20, 17]
    assert len(store.rule_history(None, 1000)) == 30
    assert store.rule_history(None, 0) == []
    assert store.rule_history("never", 10) == []


def test_import_replaces_the_whole_set_atomically(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    store.put_rule(rule("keep", hide=["a-1"]))
    store.put_rule(rule("edit", hide=["a-2"]))
    store.put_rule(rule("drop", hide=["a-3"]))
    kept_before = store.stored_rules().rules["keep"]
    done = store.replace_rules(
        {"keep": {"hide": ["a-1"]}, "edit": {"hide": ["a-9"]}, "new": {"hide_box": True}},
        by="git",
        at="2026-12-05T00:00:00Z",
    )
    assert (done.added, done.changed, done.removed, done.unchanged) == (
        ["new"],
        ["edit"],
        ["drop"],
        ["keep"],
    )
    assert done.seq == 4  # one bump for the whole import
    found = store.stored_rules()
    assert found.seq == 4 and sorted(found.rules) == ["edit", "keep", "new"]
    assert found.rules["keep"] == kept_before  # unchanged: its author and time stay
    assert found.rules["edit"]["updated_by"] == "git"
    entries = store.rule_history(None, 100)
    assert {(e["op"], e["id"]) for e in entries if e["seq"] == 4} == {
        ("put", "edit"),
        ("put", "new"),
        ("delete", "drop"),
    }
    # The same import again changes nothing: no bump, no log entries.
    again = store.replace_rules(
        {"keep": {"hide": ["a-1"]}, "edit": {"hide": ["a-9"]}, "new": {"hide_box": True}},
        by="git",
        at=AT,
    )
    assert again.seq == 4 and again.unchanged == ["edit", "keep", "new"]
    assert len(store.rule_history(None, 100)) == len(entries)
    # An empty import clears the set.
    cleared = store.replace_rules({}, by="git", at=AT)
    assert cleared.removed == ["edit", "keep", "new"] and store.stored_rules().rules == {}
    assert redis_client.exists(keys.RULES) == 0


def test_import_retries_when_a_change_lands_between_read_and_write(
    store: RedisStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCH: a put landing between the import's read and its MULTI is seen, not lost."""
    from service.redis import rules as redis_rules

    other = RedisStore(redis.Redis(connection_pool=redis_client.connection_pool))
    real = redis_rules.stored_rule
    calls = {"n": 0}

    def racing(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # inside the first attempt, after WATCH and the read
            other.put_rule(rule("racer", hide=["x-1"]))
        return real(*args, **kwargs)

    store.put_rule(rule("base", hide=["a-1"]))
    monkeypatch.setattr(redis_rules, "stored_rule", racing)
    done = store.replace_rules({"only": {"hide": ["b-1"]}}, by="git", at=AT)
    assert calls["n"] == 2  # the first attempt was thrown away
    assert sorted(store.stored_rules().rules) == ["only"]
    assert done.removed == ["base", "racer"]  # the second attempt saw the racer
    assert done.seq == 3


# ----------------------------------------------------------------------- model versions
@pytest.fixture(scope="module")
def versions_models(tmp_path_factory: pytest.TempPathFactory) -> list[LoadedModel]:
    articles = read_articles([corpus_file(tmp_path_factory)]).articles
    root = tmp_path_factory.mktemp("rules-versions")
    out = []
    for n, k in enumerate((5, 6, 7)):
        model = RelatedModel(config=ModelConfig(k=k, rerank=False)).fit(articles)
        save_model(model, articles, root / str(n))
        out.append(load_model(root / str(n)))
    return out


def test_rules_survive_publish_rollback_and_prune(
    store: RedisStore, redis_client: redis.Redis, versions_models: list[LoadedModel]
) -> None:
    a, b, c = versions_models
    publish.publish(redis_client, a)
    store.put_rule(rule("takedown", hide=["reuters-1"]))
    before = store.stored_rules()
    publish.publish(redis_client, b, keep=1)
    assert store.stored_rules() == before
    publish.rollback(redis_client)
    assert store.stored_rules() == before
    result = publish.publish(redis_client, c, keep=1)
    assert result.pruned  # a version was deleted ...
    retention.prune(redis_client, keep=1)
    assert store.stored_rules() == before  # ... and the rules were not
    assert len(store.rule_history("takedown", 10)) == 1


# ----------------------------------------------------------------------- the cache
def test_cache_rereads_only_when_the_counter_moved(redis_client: redis.Redis) -> None:
    now = [0.0]
    store = RedisStore(redis_client)
    store._rules_cache = RulesCache(  # a controllable clock for the store's own cache
        store._rules_cache._probe,
        store._read_rules,
        0.5,
        keep_on=(StoreUnavailable,),
        clock=lambda: now[0],
    )
    writer = RedisStore(redis_client)
    assert store.rules() == EMPTY_RULES
    writer.put_rule(rule("r1", hide=["a-1"]))
    assert store.rules().seq == 0  # within the ttl: the remembered set
    now[0] = 0.6
    assert store.rules().seq == 1 and "r1" in store.rules().rules
    # A write that does not touch the counter (never done by the code) is not picked up: the
    # counter is what the cache checks.
    redis_client.hset(keys.RULES, "sneaky", json.dumps(rule("sneaky")))
    now[0] = 1.2
    assert "sneaky" not in store.rules().rules


def _own_redis(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    from benchmarks.harness import free_port

    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return server, f"redis://127.0.0.1:{port}/0"


def test_an_outage_keeps_the_last_rules_and_a_cold_start_fails(tmp_path: Path) -> None:
    server, url = _own_redis(tmp_path)
    try:
        RedisStore.from_url(url).put_rule(rule("takedown", hide=["a-1"]))
        warm = RedisStore.from_url(url, timeout=0.2, rules_ttl=0)
        assert "takedown" in warm.rules().rules
        cold = RedisStore.from_url(url, timeout=0.2, rules_ttl=0)
    finally:
        server.terminate()
        server.wait(10)
    for _ in range(3):
        assert "takedown" in warm.rules().rules  # never dropped because Redis is down
    with pytest.raises(StoreUnavailable):
        cold.rules()  # nothing read yet: like every other read
    with pytest.raises(StoreUnavailable):
        warm.stored_rules()  # admin reads go to Redis: they fail


# ----------------------------------------------------------------------- the rules file
def write(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


def test_rules_file_is_validated_and_reloaded_on_change(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    write(path, {"rules": {"takedown": {"hide": ["a-1"]}}})
    rules = RulesFile(path, ttl=0)
    first = rules.rules()
    assert first.seq != 0 and first.rules["takedown"]["hide"] == ["a-1"]
    assert first.rules["takedown"]["id"] == "takedown"
    assert first.rules["takedown"]["updated_by"] == "file"
    write(path, {"rules": {"takedown": {"hide": ["a-1", "a-2"]}, "box": {"hide_box": True}}})
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = rules.rules()
    assert second.seq != first.seq and sorted(second.rules) == ["box", "takedown"]
    # A bad edit later: logged, and the last good rules stay in force.
    write(path, {"rules": {"takedown": {"hide": "a-1"}}})
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert rules.rules() == second
    assert rules.read_now() == second


def test_the_same_rules_give_the_same_seq_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    write(path, {"rules": {"r": {"hide": ["a-1"], "updated_at": AT}}})
    first = RulesFile(path).rules().seq
    assert RulesFile(path).rules().seq == first  # ETags stay valid over a restart
    write(path, {"rules": {"r": {"hide": ["a-2"], "updated_at": AT}}})
    assert RulesFile(path).rules().seq not in (0, first)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"rules": {"r1": {"hide": "a-1"}}}, "/rules/r1/hide: must be a list"),
        ({"rules": {"r1": {"pin": [{"id": "a-1", "position": 50}]}}}, "/rules/r1/pin/0/position"),
        ({"rules": {"r1": {"colour": "red"}}}, "/rules/r1/colour: unknown field"),
        ({"rules": {"bad id": {}}}, "/rules/bad id: rule id"),
        ({"rules": {"r1": {"id": "r2"}}}, "/rules/r1/id: must equal"),
        ({"rules": {"r1": {"valid_from": "2026-12-01T00:00:00"}}}, "/rules/r1/valid_from"),
        ({"rulez": {}}, "/rulez: unknown field"),
        ([], "must be a JSON object"),
    ],
)
def test_a_bad_rules_file_names_the_rule_and_field(
    tmp_path: Path, document: Any, named: str
) -> None:
    path = tmp_path / "rules.json"
    write(path, document)
    with pytest.raises(RulesFileError) as failed:
        RulesFile(path, max_k=50)
    assert named in str(failed.value) and str(path) in str(failed.value)


def test_a_missing_or_broken_rules_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="cannot read"):
        RulesFile(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"rules": {', encoding="utf-8")
    with pytest.raises(RulesFileError, match="broken.json"):
        RulesFile(tmp_path / "broken.json")
