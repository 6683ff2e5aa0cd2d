"""``/v1/rules``: CRUD, auth, validation field by field, the audit log, states and skipped pins,
embedded mode's rules file, and the ``X-Recs-Rules`` header of /related (real redis-server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from service import ConfigError
from service.redis import keys
from service.rules.schema import MAX_RULES, RuleError, validate_document
from tests.service_fixtures import ADMIN_TOKEN, NOW, embedded_app, redis_app

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STAMP = "1987-03-20T12:00:00Z"  # the tests' fixed clock as rules store it


@pytest.fixture
def client(published: str) -> FlaskClient:
    return redis_app(published, ADMIN_TOKEN=ADMIN_TOKEN, RULES_TTL=0).test_client()


def put(client: FlaskClient, rule_id: str, body: Any, **headers: str) -> Any:
    return client.put(f"/v1/rules/{rule_id}", json=body, headers={**AUTH, **headers})


def test_create_replace_read_and_delete(client: FlaskClient, loaded: LoadedModel) -> None:
    known = loaded.articles[0].id
    body = {"scope": {"section": "Deals"}, "pin": [{"id": known, "position": 0}], "note": "why"}
    created = put(client, "explainer", body)
    assert created.status_code == 201, created.get_json()
    stored = created.get_json()
    assert stored == {"id": "explainer", **body, "updated_at": STAMP, "updated_by": "api"}
    assert created.headers["Cache-Control"] == "no-store"
    replaced = put(client, "explainer", {**body, "hide_box": False}, **{"X-Recs-Editor": "Jane D"})
    assert replaced.status_code == 200 and replaced.get_json()["updated_by"] == "Jane D"
    one = client.get("/v1/rules/explainer", headers=AUTH).get_json()
    assert one["hide_box"] is False and one["state"] == "active" and one["skipped_pins"] == []
    listed = client.get("/v1/rules", headers=AUTH).get_json()
    assert listed["seq"] == 2 and [r["id"] for r in listed["rules"]] == ["explainer"]
    gone = client.delete("/v1/rules/explainer", headers=AUTH)
    assert gone.status_code == 204 and gone.data == b""
    assert client.get("/v1/rules/explainer", headers=AUTH).status_code == 404
    assert client.delete("/v1/rules/explainer", headers=AUTH).status_code == 404
    assert client.get("/v1/rules", headers=AUTH).get_json() == {"seq": 3, "rules": []}


def test_history_shows_who_when_before_and_after(client: FlaskClient) -> None:
    put(client, "r1", {"hide": ["a-1"]}, **{"X-Recs-Editor": "ed-1"})
    put(client, "r1", {"hide": ["a-2"]}, **{"X-Recs-Editor": "ed-2"})
    client.delete("/v1/rules/r1", headers={**AUTH, "X-Recs-Editor": "ed-3"})
    history = client.get("/v1/rules/r1/history", headers=AUTH).get_json()
    entries = history["entries"]
    assert [(e["op"], e["by"], e["seq"]) for e in entries] == [
        ("delete", "ed-3", 3),
        ("put", "ed-2", 2),
        ("put", "ed-1", 1),
    ]
    assert entries[0]["before"]["hide"] == ["a-2"] and entries[0]["after"] is None
    assert entries[1]["before"]["hide"] == ["a-1"] and entries[1]["after"]["hide"] == ["a-2"]
    assert all(e["at"] == STAMP for e in entries)
    limited = client.get("/v1/rules/r1/history?limit=1", headers=AUTH).get_json()
    assert len(limited["entries"]) == 1
    assert client.get("/v1/rules/never/history", headers=AUTH).status_code == 404
    bad = client.get("/v1/rules/r1/history?limit=0", headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "limit"


def test_state_follows_the_clock_and_unknown_pins_are_named(
    published: str, loaded: LoadedModel
) -> None:
    def client_at(now: datetime) -> FlaskClient:
        app = redis_app(published, ADMIN_TOKEN=ADMIN_TOKEN, CLOCK=lambda: now)
        return app.test_client()

    known = loaded.articles[0].id
    body = {
        "pin": [{"id": known, "position": 1}, {"id": "not-in-model", "position": 0}],
        "valid_from": "1987-03-20T12:00:00Z",
        "valid_until": "1987-03-21T00:00:00+02:00",
    }
    assert put(client_at(NOW), "window", body).status_code == 201
    for now, state in [
        (datetime(1987, 3, 20, 11, 59, 59, tzinfo=UTC), "scheduled"),
        (NOW, "active"),  # from valid_from on, to the second
        (datetime(1987, 3, 20, 21, 59, 59, tzinfo=UTC), "active"),
        (datetime(1987, 3, 20, 22, 0, 0, tzinfo=UTC), "expired"),  # 00:00+02:00
    ]:
        rule = client_at(now).get("/v1/rules/window", headers=AUTH).get_json()
        assert rule["state"] == state, now
        assert rule["skipped_pins"] == [{"id": "not-in-model", "reason": "not in the live model"}]


def test_auth_and_disabled_routes(published: str) -> None:
    client = redis_app(published, ADMIN_TOKEN=ADMIN_TOKEN).test_client()
    calls = [
        ("get", "/v1/rules"),
        ("get", "/v1/rules/r1"),
        ("put", "/v1/rules/r1"),
        ("delete", "/v1/rules/r1"),
        ("get", "/v1/rules/r1/history"),
    ]
    for method, url in calls:
        refused = getattr(client, method)(url, json={}, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401, url
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert getattr(client, method)(url, json={}).status_code == 401
    disabled = redis_app(published).test_client()
    for method, url in calls:
        assert getattr(disabled, method)(url, json={}, headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("body", "parameter", "reason"),
    [
        ({"colour": "red"}, "/colour", "unknown field"),
        ({"scope": {"article_id": "a b"}}, "/scope/article_id", "must be an id"),
        ({"scope": {"section": ""}}, "/scope/section", "at least 1 character"),
        ({"scope": {"section": "x", "article_id": "a"}}, "/scope", "at most 1 field"),
        ({"scope": {"tag": "x"}}, "/scope/tag", "unknown field"),
        ({"scope": []}, "/scope", "must be an object"),
        ({"hide": "a-1"}, "/hide", "must be a list"),
        ({"hide": ["a-1", "bad id"]}, "/hide/1", "must be an id"),
        ({"hide": [f"a-{n}" for n in range(1001)]}, "/hide", "at most 1000 items"),
        ({"hide_tags": [7]}, "/hide_tags/0", "must be a string"),
        ({"hide_tags": ["x" * 201]}, "/hide_tags/0", "at most 200 characters"),
        ({"hide_sections": [""]}, "/hide_sections/0", "at least 1 character"),
        ({"pin": [{"id": "a-1"}]}, "/pin/0/position", "required"),
        ({"pin": [{"id": "a-1", "position": -1}]}, "/pin/0/position", "at least 0"),
        ({"pin": [{"id": "a-1", "position": 50}]}, "/pin/0/position", "at most 49"),
        ({"pin": [{"id": "a-1", "position": 1.5}]}, "/pin/0/position", "must be an integer"),
        ({"pin": [{"id": "a-1", "position": 0, "x": 1}]}, "/pin/0/x", "unknown field"),
        (
            {"pin": [{"id": "a-1", "position": 0}, {"id": "a-1", "position": 2}]},
            "/pin/1/id",
            "pinned twice",
        ),
        ({"max_age_days": 0}, "/max_age_days", "at least 1"),
        ({"max_age_days": 100_001}, "/max_age_days", "at most 100000"),
        ({"max_age_days": "30"}, "/max_age_days", "must be an integer"),
        ({"hide_box": "yes"}, "/hide_box", "true or false"),
        ({"valid_from": "2026-12-01T06:00:00"}, "/valid_from", "with an offset"),
        ({"valid_until": "next week"}, "/valid_until", "ISO 8601"),
        ({"valid_until": 5}, "/valid_until", "must be a string"),
        (
            {"valid_from": "2026-12-02T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"},
            "/valid_until",
            "after valid_from",
        ),
        ({"note": "x" * 2001}, "/note", "at most 2000 characters"),
        ({"id": "r1"}, "/id", "unknown field"),
        ([1], "body", "must be a JSON object"),
    ],
)
def test_each_bad_field_is_a_400_naming_it(
    client: FlaskClient, body: Any, parameter: str, reason: str
) -> None:
    response = put(client, "r1", body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()
    assert error["parameter"] == parameter and reason in error["message"], error
    assert len(error["message"]) < 300  # never the whole offending list quoted back
    assert client.get("/v1/rules", headers=AUTH).get_json()["seq"] == 0  # nothing stored


def test_bad_ids_editors_and_bodies(client: FlaskClient) -> None:
    assert put(client, "a*b", {}).get_json()["parameter"] == "rule_id"
    assert put(client, "x" * 129, {}).status_code == 400
    bad = put(client, "r1", {}, **{"X-Recs-Editor": "x" * 65})
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "X-Recs-Editor"
    text = client.put("/v1/rules/r1", data="{}", headers={**AUTH, "Content-Type": "text/plain"})
    assert text.status_code == 415
    deep = client.put(
        "/v1/rules/r1",
        data="[" * 100 + "]" * 100,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert deep.status_code == 400 and deep.get_json()["parameter"] == "body"
    assert put(client, "r1", {}).status_code == 201  # an empty rule is valid (it does nothing)


def test_related_shows_the_rules_seq_of_its_worker(
    client: FlaskClient, loaded: LoadedModel
) -> None:
    url = f"/v1/articles/{loaded.articles[0].id}/related"
    assert client.get(url).headers["X-Recs-Rules"] == "0"
    put(client, "r1", {"hide": ["a-1"]})
    assert client.get(url).headers["X-Recs-Rules"] == "1"  # RULES_TTL 0: read at once


# ------------------------------------------------------------------------------ embedded
def test_embedded_mode_reads_the_rules_file_and_refuses_writes(
    model_dir: Path, tmp_path: Path, loaded: LoadedModel
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": {"takedown": {"hide": ["a-1"]}}}), encoding="utf-8")
    app = embedded_app(model_dir, ADMIN_TOKEN=ADMIN_TOKEN, RULES_FILE=str(path))
    client = app.test_client()
    listed = client.get("/v1/rules", headers=AUTH).get_json()
    assert [r["id"] for r in listed["rules"]] == ["takedown"] and listed["seq"] > 0
    seq = str(listed["seq"])
    assert (
        client.get(f"/v1/articles/{loaded.articles[0].id}/related").headers["X-Recs-Rules"] == seq
    )
    for response in (
        put(client, "r2", {"hide": ["a-2"]}),
        client.delete("/v1/rules/takedown", headers=AUTH),
    ):
        assert response.status_code == 501
        assert "RECS_RULES_FILE" in response.get_json()["message"]
    assert client.get("/v1/rules/takedown/history", headers=AUTH).status_code == 200


def test_embedded_mode_refuses_a_bad_rules_file_at_start(model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": {"legal": {"hide": ["ok", "not ok"]}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"RECS_RULES_FILE: .*rules.json: /rules/legal/hide/1"):
        embedded_app(model_dir, RULES_FILE=str(path))


def test_a_rules_file_with_redis_is_a_config_error(published: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recs rules import"):
        redis_app(published, RULES_FILE=str(tmp_path / "rules.json"))
    with pytest.raises(ConfigError, match="RULES_TTL"):
        redis_app(published, RULES_TTL=-1)


def test_pins_must_fit_the_servers_max_k(published: str) -> None:
    client = redis_app(published, ADMIN_TOKEN=ADMIN_TOKEN, MAX_K=10, DEFAULT_K=6).test_client()
    refused = put(client, "r1", {"pin": [{"id": "a-1", "position": 10}]})
    assert refused.status_code == 400
    assert refused.get_json()["parameter"] == "/pin/0/position"
    assert "below RECS_MAX_K (10)" in refused.get_json()["message"]
    assert put(client, "r1", {"pin": [{"id": "a-1", "position": 9}]}).status_code == 201


@pytest.mark.parametrize(
    "edge", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"], ids=["year-1", "year-9999"]
)
def test_a_time_beyond_the_utc_range_is_a_400_not_a_broken_api(
    client: FlaskClient, loaded: LoadedModel, edge: str
) -> None:
    # Valid ISO 8601 with an offset, but no UTC instant: once stored, compiling it overflowed
    # and every /related answered 500.
    response = put(client, "r1", {"valid_from": edge})
    assert response.status_code == 400 and response.get_json()["parameter"] == "/valid_from"
    assert client.get(f"/v1/articles/{loaded.articles[0].id}/related").status_code == 200


def test_a_lower_case_time_is_in_force_as_accepted(
    client: FlaskClient, loaded: LoadedModel
) -> None:
    # RFC 3339 allows "t" and "z"; the validator took them, the engine skipped the rule.
    url = f"/v1/articles/{loaded.articles[0].id}/related"
    shown = [item["id"] for item in client.get(url).get_json()["items"]]
    body = {"hide": [shown[0]], "valid_from": "1987-03-20t11:00:00z"}
    assert put(client, "takedown", body).status_code == 201
    assert shown[0] not in [item["id"] for item in client.get(url).get_json()["items"]]


def test_the_rule_set_is_bounded(client: FlaskClient, redis_client: redis.Redis) -> None:
    full = {f"r{n}": json.dumps({"id": f"r{n}", "note": "x"}) for n in range(MAX_RULES)}
    redis_client.hset(keys.RULES, mapping=full)
    extra = put(client, "one-more", {"hide": ["a-1"]})
    assert extra.status_code == 400 and extra.get_json()["parameter"] == "rule_id"
    assert f"full ({MAX_RULES} rules)" in extra.get_json()["message"]
    assert put(client, "r7", {"hide": ["a-1"]}).status_code == 200  # replacing one still works
    assert redis_client.hlen(keys.RULES) == MAX_RULES
    # A file (embedded mode, `recs rules import`) beyond the bound names it.
    with pytest.raises(RuleError, match="at most 10000 rules") as caught:
        validate_document({"rules": {f"r{n}": {} for n in range(MAX_RULES + 1)}})
    assert caught.value.pointer == "/rules"
