"""``/v1/events`` and ``DELETE /v1/users/<id>``: stored histories, retention, erasure, trending."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from service import ConfigError, keys
from service.history import HistorySettings, record_event, trending_weights
from tests.service_fixtures import NOW, embedded_app, redis_app

TOKEN = "s3cret-admin-token-0123456789"
EVENTS = "/v1/events"


def client_for(url: str, **config: object) -> FlaskClient:
    settings: dict[str, object] = {"ADMIN_TOKEN": TOKEN, "TRENDING_CACHE_SECONDS": 0}
    settings.update(config)
    return redis_app(url, **settings).test_client()


def stored(redis_client: redis.Redis, user_id: str) -> list[str]:
    values: Any = redis_client.lrange(keys.user_history_key(user_id), 0, -1)
    return [v.decode() for v in values]


def test_events_build_a_capped_most_recent_first_history(
    published: str, redis_client: redis.Redis
) -> None:
    client = client_for(published, HISTORY_MAX=3)
    for article_id in ["a", "b", "c", "b", "d"]:
        response = client.post(EVENTS, json={"user_id": "u1", "article_id": article_id})
        assert response.status_code == 202
        assert response.get_json() == {"status": "accepted"}
    # A re-read moves to the front; the oldest falls off the end.
    assert stored(redis_client, "u1") == ["d", "b", "c"]


def test_history_expires_after_the_retention(published: str, redis_client: redis.Redis) -> None:
    client = client_for(published, HISTORY_TTL_DAYS=30)
    client.post(EVENTS, json={"user_id": "u2", "article_id": "a", "type": "click"})
    ttl = redis_client.ttl(keys.user_history_key("u2"))
    assert 30 * 86_400 - 5 <= ttl <= 30 * 86_400
    short = client_for(published, HISTORY_TTL_DAYS=1 / 86_400)  # one second
    short.post(EVENTS, json={"user_id": "u3", "article_id": "a"})
    assert stored(redis_client, "u3") == ["a"]
    time.sleep(1.2)
    assert stored(redis_client, "u3") == []


def test_events_count_in_hourly_trending_buckets(published: str, redis_client: redis.Redis) -> None:
    client = client_for(published, TRENDING_WINDOW_HOURS=24)
    client.post(EVENTS, json={"article_id": "a"})  # anonymous: trending only
    client.post(
        EVENTS, json={"article_id": "a", "type": "click", "position": 2, "source": "history"}
    )
    bucket = keys.trending_key(int(NOW.timestamp() // 3600))
    assert redis_client.zscore(bucket, "a") == 2.0
    assert 0 < redis_client.ttl(bucket) <= 25 * 3600
    assert not redis_client.keys(keys.USER_ROOT + "*")


def test_a_reader_counts_once_per_article_for_trending(
    published: str, redis_client: redis.Redis
) -> None:
    # One reader reloading a page must not lift it into every reader's box: a repeat of an
    # article still in the reader's history moves it to the front but does not count again.
    client = client_for(published, HISTORY_MAX=3)
    bucket = keys.trending_key(int(NOW.timestamp() // 3600))
    for _ in range(5):
        client.post(EVENTS, json={"user_id": "reloader", "article_id": "hot"})
    assert redis_client.zscore(bucket, "hot") == 1.0
    client.post(EVENTS, json={"user_id": "second-reader", "article_id": "hot"})
    client.post(EVENTS, json={"article_id": "hot"})  # anonymous: no history, always counts
    client.post(EVENTS, json={"article_id": "hot"})
    assert redis_client.zscore(bucket, "hot") == 4.0
    # Once the article has left the capped history, reading it again is a new read.
    for article_id in ["x", "y", "z", "hot"]:
        client.post(EVENTS, json={"user_id": "reloader", "article_id": article_id})
    assert stored(redis_client, "reloader") == ["hot", "z", "y"]
    assert redis_client.zscore(bucket, "hot") == 5.0
    assert redis_client.zscore(bucket, "x") == 1.0


def test_record_event_says_whether_it_counted(redis_client: redis.Redis) -> None:
    settings = HistorySettings(max_items=10)
    now = NOW.timestamp()
    assert record_event(redis_client, "a", "u-count", now, settings) is True
    assert record_event(redis_client, "a", "u-count", now, settings) is False
    assert record_event(redis_client, "a", None, now, settings) is True
    bucket = keys.trending_key(int(now // 3600))
    assert redis_client.zscore(bucket, "a") == 2.0
    assert 0 < redis_client.ttl(bucket) <= 25 * 3600


def test_trending_weights_decay_by_hour() -> None:
    weights = trending_weights(7200.0, HistorySettings(window_hours=3, half_life_hours=1))
    assert weights == {"rs:trend:2": 1.0, "rs:trend:1": 0.5, "rs:trend:0": 0.25}


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "article_id"),
        ({"article_id": "bad id"}, "article_id"),
        ({"article_id": 5}, "article_id"),
        ({"article_id": "a", "user_id": ""}, "user_id"),
        ({"article_id": "a", "type": "purchase"}, "type"),
        ({"article_id": "a", "position": True}, "position"),
        ({"article_id": "a", "position": 5000}, "position"),
        ({"article_id": "a", "source": "somewhere"}, "source"),
        ({"article_id": "a", "extra": 1}, "extra"),
        (["a"], "body"),
    ],
)
def test_bad_events_are_400(published: str, body: object, parameter: str) -> None:
    response = client_for(published).post(EVENTS, json=body)
    assert response.status_code == 400
    assert response.get_json()["parameter"] == parameter


def test_oversized_event_is_413(published: str) -> None:
    response = client_for(published).post(EVENTS, data="x" * 20_000)
    assert response.status_code == 413


# ------------------------------------------------------------------------------- erasure
def test_deleting_a_user_needs_the_admin_token(published: str, redis_client: redis.Redis) -> None:
    client = client_for(published)
    client.post(EVENTS, json={"user_id": "u4", "article_id": "a"})
    url = "/v1/users/u4"
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        response = client.delete(url, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"] == "unauthorized"
    assert stored(redis_client, "u4") == ["a"]
    response = client.delete(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 204
    assert stored(redis_client, "u4") == []
    # Idempotent: erasing again (or an unknown user) is fine.
    assert client.delete(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 204
    bad = client.delete("/v1/users/a%20b", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400


def test_deletion_is_disabled_without_a_token(published: str) -> None:
    client = client_for(published, ADMIN_TOKEN=None)
    response = client.delete("/v1/users/u5", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404  # like an unknown URL: disabled, not open
    assert response.get_json()["error"] == "not_found"
    assert client.get("/v1/users/u5").status_code == 405


def test_a_short_admin_token_is_refused(published: str) -> None:
    with pytest.raises(ConfigError, match="ADMIN_TOKEN .*at least 16"):
        client_for(published, ADMIN_TOKEN="short")


# ------------------------------------------------------------------------------- no Redis
def test_embedded_mode_has_no_server_side_history(model_dir: Path) -> None:
    client = embedded_app(model_dir, ADMIN_TOKEN=TOKEN).test_client()
    response = client.post(EVENTS, json={"user_id": "u", "article_id": "a"})
    assert response.status_code == 501
    assert "need Redis" in response.get_json()["message"]
    response = client.delete("/v1/users/u", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 501
    # Recommendations from a given history still work.
    assert client.post("/v1/recommendations", json={"history": ["x"], "k": 2}).status_code == 200


def test_redis_down_is_503(model_dir: Path) -> None:
    client = redis_app("redis://127.0.0.1:1/0").test_client()
    response = client.post(EVENTS, json={"user_id": "u", "article_id": "a"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
