"""``/v1/events`` and ``DELETE /v1/users/<id>``: signed readers, stored histories, retention,
erasure, trending that counts readers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from models.artifact import LoadedModel
from service import ConfigError, tokens
from service.redis import keys
from service.redis.events import record_event, trending_weights
from service.store.base import (
    COUNTED,
    NOT_COUNTED,
    UNKNOWN_ARTICLE,
    HistorySettings,
    Reader,
)
from tests.service_fixtures import (
    ADMIN_TOKEN,
    NOW,
    SIGNING_KEY,
    TOKEN_EXPIRES,
    embedded_app,
    events_client,
    redis_app,
)

TOKEN = ADMIN_TOKEN
EVENTS = "/v1/events"
LATER = TOKEN_EXPIRES
client_for = events_client


def token(user_id: str, expires: int = LATER, key: str = SIGNING_KEY) -> str:
    return tokens.sign(key, user_id, expires)


def stored(redis_client: redis.Redis, user_id: str) -> list[str]:
    values: Any = redis_client.lrange(keys.user_history_key(user_id), 0, -1)
    return [v.decode() for v in values]


@pytest.fixture
def ids(loaded: LoadedModel) -> list[str]:
    """Article ids of the published session model."""
    return [article.id for article in loaded.articles]


def bucket_now() -> str:
    return keys.trending_key(int(NOW.timestamp() // 3600))


def test_events_build_a_capped_most_recent_first_history(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published, HISTORY_MAX=3)
    a, b, c, d = ids[:4]
    for article_id in [a, b, c, b, d]:
        response = client.post(EVENTS, json={"user_token": token("u1"), "article_id": article_id})
        assert response.status_code == 202
        assert response.get_json() == {"status": "accepted"}
    # A re-read moves to the front; the oldest falls off the end.
    assert stored(redis_client, "u1") == [d, b, c]


def test_history_expires_after_the_retention(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published, HISTORY_TTL_DAYS=30)
    client.post(EVENTS, json={"user_token": token("u2"), "article_id": ids[0], "type": "click"})
    ttl = redis_client.ttl(keys.user_history_key("u2"))
    assert 30 * 86_400 - 5 <= ttl <= 30 * 86_400
    short = client_for(published, HISTORY_TTL_DAYS=1 / 86_400)  # one second
    short.post(EVENTS, json={"user_token": token("u3"), "article_id": ids[0]})
    assert stored(redis_client, "u3") == [ids[0]]
    time.sleep(1.2)
    assert stored(redis_client, "u3") == []


def test_events_count_readers_in_hourly_trending_buckets(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published, TRENDING_WINDOW_HOURS=24)
    article = ids[0]
    # Anonymous readers are told apart by their address and count half.
    for address in ("10.0.0.1", "10.0.0.2"):
        response = client.post(
            EVENTS, json={"article_id": article}, environ_base={"REMOTE_ADDR": address}
        )
        assert response.status_code == 202
    client.post(
        EVENTS,
        json={"article_id": article, "type": "click", "position": 2, "source": "history"},
        environ_base={"REMOTE_ADDR": "10.0.0.3"},
    )
    assert redis_client.zscore(bucket_now(), article) == 1.5
    assert 0 < redis_client.ttl(bucket_now()) <= 25 * 3600
    assert not redis_client.keys(keys.USER_ROOT + "*")
    # No address or id in any key name: the reader sets are keyed by a digest.
    names = [name.decode() for name in redis_client.keys(keys.SEEN_ROOT + "*")]
    assert len(names) == 3 and not any("10.0.0" in name for name in names)


def test_a_reader_counts_once_per_article_and_window(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    # One reader reloading a page, at any rate, must not lift it into every reader's box.
    client = client_for(published, HISTORY_MAX=3)
    hot = ids[0]
    for _ in range(5):
        client.post(EVENTS, json={"user_token": token("reloader"), "article_id": hot})
    assert redis_client.zscore(bucket_now(), hot) == 1.0
    client.post(EVENTS, json={"user_token": token("second-reader"), "article_id": hot})
    for _ in range(5):  # one anonymous address, five times: half a count, once
        client.post(EVENTS, json={"article_id": hot})
    assert redis_client.zscore(bucket_now(), hot) == 2.5
    # Leaving the capped history does not make a re-read count again within the window.
    for article_id in [*ids[1:4], hot]:
        client.post(EVENTS, json={"user_token": token("reloader"), "article_id": article_id})
    assert stored(redis_client, "reloader") == [hot, ids[3], ids[2]]
    assert redis_client.zscore(bucket_now(), hot) == 2.5
    assert redis_client.zscore(bucket_now(), ids[1]) == 1.0


def test_record_event_says_whether_it_counted(
    published: str, redis_client: redis.Redis, ids: list[str], loaded: LoadedModel
) -> None:
    settings = HistorySettings(max_items=10)
    now = NOW.timestamp()
    version, article = loaded.version, ids[0]
    reader = Reader("u", "u-count")
    assert record_event(redis_client, version, article, reader, now, settings) == COUNTED
    assert record_event(redis_client, version, article, reader, now, settings) == NOT_COUNTED
    # The window is per reader: a day later the same reader counts again.
    later = now + 24 * 3600 + 1
    assert record_event(redis_client, version, article, reader, later, settings) == COUNTED
    # No reader at all (no token, no address): checked, stored nowhere, never counted.
    assert record_event(redis_client, version, article, None, now, settings) == NOT_COUNTED
    assert record_event(redis_client, version, "junk-id", reader, now, settings) == UNKNOWN_ARTICLE
    bucket = keys.trending_key(int(now // 3600))
    assert redis_client.zscore(bucket, article) == 1.0
    assert redis_client.zscore(bucket, "junk-id") is None


def test_a_reader_counted_for_too_many_articles_stops_counting(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published, TRENDING_READER_MAX=5)
    for article_id in ids[:8]:
        assert client.post(EVENTS, json={"article_id": article_id}).status_code == 202
    counted = [redis_client.zscore(bucket_now(), i) for i in ids[:8]]
    assert counted == [0.5] * 5 + [None] * 3
    seen = redis_client.keys(keys.SEEN_ROOT + "*")
    assert len(seen) == 1 and redis_client.zcard(seen[0]) == 5


def test_trending_weights_decay_by_hour() -> None:
    weights = trending_weights(7200.0, HistorySettings(window_hours=3, half_life_hours=1))
    assert weights == {"rs:trend:2": 1.0, "rs:trend:1": 0.5, "rs:trend:0": 0.25}


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "article_id"),
        ({"article_id": "bad id"}, "article_id"),
        ({"article_id": 5}, "article_id"),
        ({"article_id": "a", "type": "purchase"}, "type"),
        ({"article_id": "a", "position": True}, "position"),
        ({"article_id": "a", "position": 5000}, "position"),
        ({"article_id": "a", "source": "somewhere"}, "source"),
        ({"article_id": "a", "extra": 1}, "extra"),
        ({"article_id": "a", "user_token": ""}, "user_token"),
        ({"article_id": "a", "user_token": "no-dots"}, "user_token"),
        ({"article_id": "a", "user_token": 7}, "user_token"),
        (["a"], "body"),
    ],
)
def test_bad_events_are_400(published: str, body: object, parameter: str) -> None:
    response = client_for(published).post(EVENTS, json=body)
    assert response.status_code == 400
    assert response.get_json()["parameter"] == parameter


def test_oversized_event_is_413(published: str) -> None:
    response = client_for(published).post(
        EVENTS, data="x" * 20_000, content_type="application/json"
    )
    assert response.status_code == 413


def test_deleting_a_user_needs_the_admin_token(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published)
    article = ids[0]
    client.post(EVENTS, json={"user_token": token("u4"), "article_id": article})
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
    assert stored(redis_client, "u4") == [article]
    assert redis_client.exists(keys.seen_key("u", "u4"))
    response = client.delete(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 204
    assert stored(redis_client, "u4") == []
    # What the reader was counted for is theirs too.
    assert not redis_client.exists(keys.seen_key("u", "u4"))
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
def test_embedded_mode_keeps_history_and_trending_in_memory(
    model_dir: Path, ids: list[str]
) -> None:
    # No Redis at all: "for you" still follows a signed reader's events, and erasure works.
    client = embedded_app(model_dir, ADMIN_TOKEN=TOKEN, USER_SIGNING_KEY=SIGNING_KEY).test_client()
    reader = token("u")
    for article_id in ids[:3]:
        response = client.post(EVENTS, json={"user_token": reader, "article_id": article_id})
        assert response.status_code == 202
    junk = client.post(EVENTS, json={"user_token": reader, "article_id": "junk-1"})
    assert junk.status_code == 404 and junk.get_json()["parameter"] == "article_id"
    body = {"user_token": reader, "k": 5}
    items = client.post("/v1/recommendations", json=body).get_json()["items"]
    because = {seen for item in items for seen in item["because"]}
    assert because and because <= set(ids[:3])
    assert not {item["id"] for item in items} & set(ids[:3])  # read stories are not offered
    admin = {"Authorization": f"Bearer {TOKEN}"}
    assert client.delete("/v1/users/u", headers=admin).status_code == 204
    after = client.post("/v1/recommendations", json=body).get_json()["items"]
    assert not any(item["because"] for item in after)
    # Recommendations from a given history still work.
    assert client.post("/v1/recommendations", json={"history": ["x"], "k": 2}).status_code == 200


def test_redis_down_is_503(model_dir: Path) -> None:
    client = redis_app("redis://127.0.0.1:1/0").test_client()
    response = client.post(EVENTS, json={"article_id": "a"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]


# ------------------------------------------------------------------------------- identities
def test_a_bare_user_id_is_refused_and_nothing_is_written(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published)
    response = client.post(EVENTS, json={"user_id": "victim", "article_id": ids[0]})
    assert response.status_code == 401
    assert response.get_json()["parameter"] == "user_id"
    assert "user_token" in response.get_json()["message"]
    assert stored(redis_client, "victim") == []
    assert redis_client.zcard(bucket_now()) == 0


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda: token("victim", key="another-key-of-the-same-length-000"), 401),  # forged
        (lambda: token("victim", expires=int(NOW.timestamp()) - 1), 401),  # expired
        (lambda: token("mallory").replace("mallory", "victim", 1), 401),  # id swapped
        (lambda: token("victim")[:-1] + "A", 401),  # signature altered
        (lambda: token("victim") + ".x", 400),  # malformed
        (lambda: "victim.notdigits." + "A" * 43, 400),
    ],
)
def test_forged_expired_or_malformed_tokens_write_nothing(
    published: str, redis_client: redis.Redis, ids: list[str], make: Any, status: int
) -> None:
    client = client_for(published)
    response = client.post(EVENTS, json={"user_token": make(), "article_id": ids[0]})
    assert response.status_code == status
    assert response.get_json()["parameter"] == "user_token"
    assert stored(redis_client, "victim") == []
    assert redis_client.zcard(bucket_now()) == 0
    assert response.headers["Content-Type"] == "application/json"


def test_without_a_signing_key_server_side_history_is_off(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published, USER_SIGNING_KEY=None)
    response = client.post(EVENTS, json={"user_token": token("u"), "article_id": ids[0]})
    assert response.status_code == 501
    assert "RECS_USER_SIGNING_KEY" in response.get_json()["message"]
    assert redis_client.zcard(bucket_now()) == 0
    # Anonymous events still count for trending.
    assert client.post(EVENTS, json={"article_id": ids[0]}).status_code == 202
    assert redis_client.zscore(bucket_now(), ids[0]) == 0.5


def test_a_weak_signing_key_refuses_to_start(published: str) -> None:
    with pytest.raises(ConfigError, match="USER_SIGNING_KEY .*at least 32"):
        client_for(published, USER_SIGNING_KEY="short")


def test_unknown_articles_are_refused_and_store_nothing(
    published: str, redis_client: redis.Redis
) -> None:
    client = client_for(published)
    before = sorted(redis_client.keys("*"))
    for n in range(300):
        response = client.post(
            EVENTS,
            json={"article_id": f"junk-{n}", "user_token": token("u9")},
            environ_base={"REMOTE_ADDR": f"10.1.{n // 250}.{n % 250}"},
        )
        assert response.status_code == 404
        assert response.get_json()["parameter"] == "article_id"
        assert f"junk-{n}" in response.get_json()["message"]
    assert sorted(redis_client.keys("*")) == before


def test_erased_history_is_never_served_again_even_with_redis_paused(
    published: str, redis_client: redis.Redis, ids: list[str]
) -> None:
    client = client_for(published, REDIS_TIMEOUT=0.2, HISTORY_REDIS_TIMEOUT=0.2)
    reader = token("erase-me")
    for article_id in ids[:3]:
        client.post(EVENTS, json={"user_token": reader, "article_id": article_id})
    body = {"user_token": reader, "k": 5}
    first = client.post("/v1/recommendations", json=body)
    assert first.status_code == 200
    assert any(item["because"] for item in first.get_json()["items"])
    admin = {"Authorization": f"Bearer {TOKEN}"}
    assert client.delete("/v1/users/erase-me", headers=admin).status_code == 204
    redis_client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    try:
        time.sleep(0.3)  # past the version cache
        during = client.post("/v1/recommendations", json=body)
    finally:
        time.sleep(1.3)
    assert during.status_code == 503
    assert "X-Recs-Stale" not in during.headers
    after = client.post("/v1/recommendations", json=body)
    assert after.status_code == 200
    assert not any(item["because"] for item in after.get_json()["items"])
