"""Editorial rules against the stale cache (service/resilience.py), on a private redis-server
this file starts and kills: an answer remembered before a takedown, or before a rule window or
an expiry began, is never served stale after it; an answer the rules still allow is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from benchmarks.harness import RedisServer
from models.artifact import LoadedModel
from service.redis import publish
from tests.rules_fixtures import Clock, iso
from tests.service_fixtures import ADMIN_TOKEN, NOW, redis_app

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELATED = "/v1/articles/{}/related"
FOR_YOU = "/v1/recommendations"


@pytest.fixture
def server(tmp_path: Path, loaded: LoadedModel) -> Iterator[RedisServer]:
    instance = RedisServer(tmp_path)
    instance.start()
    try:
        publish.publish(instance.client(), loaded)
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(server: RedisServer, clock: Clock) -> FlaskClient:
    # Every request reads the version and the rules counter, so the app sees a rule at once;
    # the breaker stays open once Redis fails, so the outage is quick to meet.
    app = redis_app(
        server.url,
        ADMIN_TOKEN=ADMIN_TOKEN,
        CLOCK=clock,
        RULES_TTL=0,
        VERSION_TTL=0,
        REDIS_TIMEOUT=0.25,
        BREAKER_COOLDOWN=60,
        TRENDING_CACHE_SECONDS=0,
        RECOMMENDATIONS_RATE_LIMIT="off",
    )
    return app.test_client()


def with_neighbours(loaded: LoadedModel) -> list[str]:
    return [a.id for a in loaded.articles if loaded.model.neighbours(a.id)]


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


def put_rule(client: FlaskClient, rule_id: str, body: dict[str, Any]) -> None:
    response = client.put(f"/v1/rules/{rule_id}", json=body, headers=AUTH)
    assert response.status_code == 201, response.get_json()


def test_related_answer_remembered_before_a_takedown_is_not_served_after_it(
    server: RedisServer, client: FlaskClient, loaded: LoadedModel
) -> None:
    source, other, third = with_neighbours(loaded)[:3]
    before = client.get(RELATED.format(source))
    kept = client.get(RELATED.format(other))
    assert before.status_code == 200 and kept.status_code == 200
    taken_down = next(i for i in ids(before.get_json()) if i not in ids(kept.get_json()))
    put_rule(client, "takedown", {"hide": [taken_down], "note": "legal"})
    # Another article's box: this worker now holds the new rules; the source's answer is old.
    assert client.get(RELATED.format(third)).headers["X-Recs-Rules"] == "1"
    server.kill()
    after = client.get(RELATED.format(source))
    assert after.status_code == 503, after.get_json()
    etag = before.headers["ETag"]
    assert client.get(RELATED.format(source), headers={"If-None-Match": etag}).status_code == 503
    # An answer the new rules still allow is served stale as before.
    still = client.get(RELATED.format(other))
    assert still.status_code == 200 and still.headers["X-Recs-Stale"] == "1"
    assert still.get_json() == kept.get_json()


def test_related_answer_is_not_served_stale_once_a_rule_window_opens(
    server: RedisServer, client: FlaskClient, clock: Clock, loaded: LoadedModel
) -> None:
    source = with_neighbours(loaded)[0]
    shown = ids(client.get(RELATED.format(source)).get_json())
    start = NOW + timedelta(seconds=60)
    put_rule(client, "tonight", {"hide": [shown[0]], "valid_from": iso(start)})
    before = client.get(RELATED.format(source))
    assert ids(before.get_json()) == shown  # not yet in force: the answer is remembered as is
    server.kill()
    clock.advance(59)
    stale = client.get(RELATED.format(source))
    assert stale.status_code == 200 and stale.headers["X-Recs-Stale"] == "1"
    assert ids(stale.get_json()) == shown
    clock.advance(1)  # to the second
    assert client.get(RELATED.format(source)).status_code == 503


def test_for_you_answer_remembered_before_a_takedown_is_not_served_after_it(
    server: RedisServer, client: FlaskClient, loaded: LoadedModel
) -> None:
    history = with_neighbours(loaded)[:2]
    before = client.post(FOR_YOU, json={"history": history, "k": 6})
    other = client.post(FOR_YOU, json={"history": history[:1], "k": 6})
    assert before.status_code == 200 and other.status_code == 200
    taken_down = next(i for i in ids(before.get_json()) if i not in ids(other.get_json()))
    put_rule(client, "takedown", {"hide": [taken_down]})
    assert client.get(RELATED.format(history[1])).headers["X-Recs-Rules"] == "1"
    server.kill()
    assert client.post(FOR_YOU, json={"history": history, "k": 6}).status_code == 503
    still = client.post(FOR_YOU, json={"history": history[:1], "k": 6})
    assert still.status_code == 200 and still.headers["X-Recs-Stale"] == "1"
    assert still.get_json() == other.get_json()
