"""``recs versions`` and ``list_versions`` report incremental updates and their drift."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner, Result

from models.artifact import LoadedModel
from scripts.publish_cmd import versions_command
from service.redis import keys, publish
from service.redis.versions import list_versions


def versions(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(
        versions_command, ["--redis-url", url, *args], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result


def simulate_writer(client: redis.Redis, version: str, upserts: int, deletes: int) -> None:
    """The counters service/redis/queue.py's writer keeps in a version's info hash."""
    info = keys.info_key(version)
    articles = int(client.hget(info, "articles") or 0)
    client.hset(
        info,
        mapping={
            "upserts": upserts,
            "deletes": deletes,
            "base_articles": articles,
            "articles": articles + upserts - deletes,
        },
    )


def test_list_versions_carries_the_drift(redis_client: redis.Redis, loaded: LoadedModel) -> None:
    publish.publish(redis_client, loaded)
    (row,) = list_versions(redis_client)
    assert (row.upserts, row.deletes, row.drift, row.retrain_due) == (0, 0, 0.0, False)
    simulate_writer(redis_client, loaded.version, 50, 10)
    (row,) = list_versions(redis_client)
    assert (row.upserts, row.deletes, row.articles) == (50, 10, 440)
    assert row.drift == pytest.approx(0.15) and row.retrain_due
    (row,) = list_versions(redis_client, drift_threshold=0.2)
    assert not row.retrain_due


def test_versions_shows_updates_only_when_there_are_some(
    redis_url: str, redis_client: redis.Redis, loaded: LoadedModel
) -> None:
    publish.publish(redis_client, loaded)
    plain = versions(redis_url).output.splitlines()
    assert plain[0].split() == ["VERSION", "BUILT", "PUBLISHED", "ARTICLES", "K"]

    simulate_writer(redis_client, loaded.version, 36, 4)
    lines = versions(redis_url).output.splitlines()
    assert lines[0].split()[-3:] == ["UPSERTS", "DELETES", "DRIFT"]
    assert lines[1].startswith(f"* {loaded.version} ")
    # 40 changes on a 400-article build: 10%, due at the default threshold of 0.1.
    assert lines[1].split()[-3:] == ["36", "4", "10.0%!"]

    lenient = versions(redis_url, "--retrain-drift", "0.5").output.splitlines()
    assert lenient[1].split()[-1] == "10.0%"
    from_env = versions(redis_url, env={"RECS_RETRAIN_DRIFT": "0.5"}).output.splitlines()
    assert from_env[1].split()[-1] == "10.0%"


def test_versions_json_includes_the_drift(
    redis_url: str, redis_client: redis.Redis, loaded: LoadedModel
) -> None:
    publish.publish(redis_client, loaded)
    simulate_writer(redis_client, loaded.version, 3, 1)
    (line,) = versions(redis_url, "--json").output.splitlines()
    row = json.loads(line)
    assert row["version"] == loaded.version and row["current"] is True
    assert (row["upserts"], row["deletes"], row["drift"], row["retrain_due"]) == (
        3,
        1,
        0.01,
        False,
    )


def test_a_bad_threshold_is_a_usage_error(redis_url: str) -> None:
    result = CliRunner().invoke(
        versions_command, ["--redis-url", redis_url, "--retrain-drift", "0"]
    )
    assert result.exit_code == 2 and "--retrain-drift" in result.output
