"""``PUT`` / ``DELETE /v1/articles/<id>``: admin-only incremental updates through the queue."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from models.records import read_articles
from service.openapi import spec_bytes
from service.redis import keys
from service.redis.writer import Writer
from tests.paths import SAMPLE_ARTICLES
from tests.service_fixtures import (
    N_ARTICLES,
    embedded_app,
    redis_app,
)

TOKEN = "s3cret-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNREACHABLE = "redis://127.0.0.1:1/0"
ARTICLE = "/v1/articles/{}"
NEW = {
    "title": "Cocoa exporters expect a record harvest",
    "body": "Cocoa prices fell as exporters in Ivory Coast and Ghana expect a record crop.",
    "tags": ["cocoa", "ivory-coast"],
    "section": "Markets",
    "published_at": "1987-03-19T10:00:00+01:00",
    "url": "https://news.example/new-1",
}


@pytest.fixture
def client(published: str) -> FlaskClient:
    # VERSION_TTL 0: an applied update shows in the very next read.
    return redis_app(published, ADMIN_TOKEN=TOKEN, VERSION_TTL=0).test_client()


def queued(redis_client: redis.Redis) -> list[dict[str, str]]:
    """The update stream's entries, decoded."""
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in redis_client.xrange(keys.UPDATES)
    ]


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert set(body) >= {"error", "message"}
    return body


# ------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("method", ["put", "delete"])
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}]
)
def test_missing_or_wrong_token_is_401(
    client: FlaskClient, redis_client: redis.Redis, method: str, headers: dict[str, str]
) -> None:
    response = getattr(client, method)(ARTICLE.format("new-1"), json=NEW, headers=headers)
    assert error_of(response, 401)["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert queued(redis_client) == []


@pytest.mark.parametrize("method", ["put", "delete"])
def test_no_token_configured_is_404(published: str, redis_client: redis.Redis, method: str) -> None:
    client = redis_app(published, ADMIN_TOKEN=None).test_client()
    for headers in ({}, AUTH):
        response = getattr(client, method)(ARTICLE.format("new-1"), json=NEW, headers=headers)
        assert error_of(response, 404)["error"] == "not_found"
    assert queued(redis_client) == []


# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "parameter", "words"),
    [
        ({"tags": ["cocoa"]}, "title", "title and body are both empty"),
        ({"title": "", "body": "  "}, "title", "one is required"),
        ({"title": 5}, "title", "must be a string"),
        ({"title": "t", "body": ["b"]}, "body", "must be a string"),
        ({"title": "t", "tags": "cocoa"}, "tags", "must be a list of strings"),
        ({"title": "t", "tags": ["cocoa", 7]}, "tags", "item 1 must be a string"),
        ({"title": "t", "published_at": "yesterday"}, "published_at", "not an ISO-8601"),
        ({"title": "t", "published_at": 1987}, "published_at", "ISO-8601 string"),
        ({"title": "t", "id": "other-id"}, "id", "must equal the article id in the path"),
        ({"title": "t", "id": 12}, "id", "must equal"),
        ({"title": "t", "section": {"a": 1}}, "section", "must be a string"),
        ({"title": "t", "sponsored": "yes"}, "sponsored", "must be true or false"),
        ({"title": "t", "no_recommend": 1}, "no_recommend", "must be true or false"),
        ({"title": "t", "embargo_until": "2026-12-05T06:00:00"}, "embargo_until", "no UTC offset"),
        ({"title": "t", "expires_at": "soon"}, "expires_at", "not an ISO-8601"),
        ([NEW], "body", "must be a JSON object"),
        ("just a string", "body", "must be a JSON object"),
    ],
)
def test_bad_articles_are_400_naming_the_field(
    client: FlaskClient, redis_client: redis.Redis, body: Any, parameter: str, words: str
) -> None:
    response = client.put(ARTICLE.format("new-1"), json=body, headers=AUTH)
    error = error_of(response, 400)
    assert error["error"] == "bad_request"
    assert error["parameter"] == parameter
    assert error["message"].startswith(f"{parameter}: ") and words in error["message"]
    assert queued(redis_client) == []


@pytest.mark.parametrize("data", [b"{not json", b"", b"\xff\xfe\x00", b'{"title": "t"'])
def test_a_body_that_is_not_json_is_400(
    client: FlaskClient, redis_client: redis.Redis, data: bytes
) -> None:
    response = client.put(
        ARTICLE.format("new-1"), data=data, content_type="application/json", headers=AUTH
    )
    assert error_of(response, 400)["parameter"] == "body"
    assert queued(redis_client) == []


@pytest.mark.parametrize("bad_id", ["a*b", "a b", "x" * 129, "rs:*", "é"])
@pytest.mark.parametrize("method", ["put", "delete"])
def test_bad_path_ids_are_400(
    client: FlaskClient, redis_client: redis.Redis, bad_id: str, method: str
) -> None:
    response = getattr(client, method)(ARTICLE.format(bad_id), json=NEW, headers=AUTH)
    error = error_of(response, 400)
    assert error["parameter"] == "article_id" and "not a valid article id" in error["message"]
    assert queued(redis_client) == []


@pytest.mark.parametrize("wait", ["soon", "-1", "31", "nan", "inf", "1e400", ""])
@pytest.mark.parametrize("method", ["put", "delete"])
def test_bad_wait_is_400(
    client: FlaskClient, redis_client: redis.Redis, wait: str, method: str
) -> None:
    response = getattr(client, method)(
        ARTICLE.format("new-1"), query_string={"wait": wait}, json=NEW, headers=AUTH
    )
    error = error_of(response, 400)
    assert error["parameter"] == "wait" and "0 to 30 seconds" in error["message"]
    assert queued(redis_client) == []


def test_an_oversized_body_is_413(published: str, redis_client: redis.Redis) -> None:
    client = redis_app(published, ADMIN_TOKEN=TOKEN, MAX_CONTENT_LENGTH=4096).test_client()
    big = {**NEW, "body": "cocoa " * 2000}
    response = client.put(ARTICLE.format("new-1"), json=big, headers=AUTH)
    assert error_of(response, 413)["error"] == "request_entity_too_large"
    assert queued(redis_client) == []


# ------------------------------------------------------------------------------- modes


@pytest.mark.parametrize("method", ["put", "delete"])
def test_embedded_mode_points_to_recs_upsert(model_dir: Path, method: str) -> None:
    client = embedded_app(model_dir, ADMIN_TOKEN=TOKEN).test_client()
    response = getattr(client, method)(ARTICLE.format("new-1"), json=NEW, headers=AUTH)
    error = error_of(response, 501)
    assert error["error"] == "not_implemented"
    assert "recs upsert --model DIR" in error["message"] and "RECS_REDIS_URL" in error["message"]


@pytest.mark.parametrize("method", ["put", "delete"])
def test_redis_down_is_503(method: str) -> None:
    client = redis_app(UNREACHABLE, ADMIN_TOKEN=TOKEN).test_client()
    response = getattr(client, method)(ARTICLE.format("new-1"), json=NEW, headers=AUTH)
    assert error_of(response, 503)["error"] == "unavailable"
    assert response.headers["Retry-After"]


def test_queued_without_a_writer_is_202(
    client: FlaskClient, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.articles_admin"):
        put = client.put(ARTICLE.format("new-1"), json={**NEW, "id": "new-1"}, headers=AUTH)
        gone = client.delete(ARTICLE.format("reuters-42"), headers=AUTH)
    for response in (put, gone):
        assert response.status_code == 202, response.get_json()
        assert response.headers["Cache-Control"] == "no-store"
        assert "Location" not in response.headers
    body = put.get_json()
    assert body["status"] == "queued" and body["id"] == "new-1"
    assert "no writer is running" in body["message"]
    entries = redis_client.xrange(keys.UPDATES)
    assert [e.decode() for e, _ in entries] == [body["entry"], gone.get_json()["entry"]]
    first, second = queued(redis_client)
    assert (first["op"], first["id"], first["by"]) == ("upsert", "new-1", "api")
    article = json.loads(first["article"])
    assert article["title"] == NEW["title"] and article["tags"] == NEW["tags"]
    assert article["published_at"] == "1987-03-19T09:00:00Z"  # normalised like the JSONL input
    assert (second["op"], second["id"]) == ("delete", "reuters-42")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no update writer is running" in w and "new-1" in w for w in warnings)


def test_queued_when_the_writer_does_not_answer_in_time(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    # A writer holds the lock but is busy: the request waits ?wait= seconds, then says queued.
    redis_client.set(keys.UPDATE_LOCK, "busy-writer", px=10_000)
    response = client.put(
        ARTICLE.format("new-1"), query_string={"wait": "0.3"}, json=NEW, headers=AUTH
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and "not applied within 0.3 s" in body["message"]
    assert len(queued(redis_client)) == 1
    # wait=0 answers at once.
    now = client.delete(ARTICLE.format("reuters-42"), query_string={"wait": "0"}, headers=AUTH)
    assert now.status_code == 202 and len(queued(redis_client)) == 2


# ------------------------------------------------------------------------------- end to end


@pytest.fixture
def writer(published: str, redis_client: redis.Redis, loaded: LoadedModel) -> Iterator[Writer]:
    """The real update writer, applying the stream in a thread."""
    stop = threading.Event()
    with Writer(redis_client, lambda version: loaded, block_ms=50) as running:
        thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield running
        finally:
            stop.set()
            thread.join(10)
    assert not thread.is_alive()


def test_applied_end_to_end(
    client: FlaskClient, redis_client: redis.Redis, writer: Writer, loaded: LoadedModel
) -> None:
    fresh = read_articles([SAMPLE_ARTICLES]).articles[N_ARTICLES + 5]
    record = {**fresh.to_dict(), "section": "Markets"}
    response = client.put(
        ARTICLE.format(fresh.id), query_string={"wait": "20"}, json=record, headers=AUTH
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "applied" and body["id"] == fresh.id
    assert body["model_version"] == loaded.version and body["changed"] >= 1
    assert body["entry"] == queued_ids(redis_client)[-1]
    jsonschema = pytest.importorskip("jsonschema")
    components = json.loads(spec_bytes())["components"]
    schema = {"$ref": "#/components/schemas/UpdateApplied", "components": components}
    jsonschema.Draft202012Validator(schema).validate(body)

    related = client.get(f"/v1/articles/{fresh.id}/related", query_string={"k": 5})
    assert related.status_code == 200
    items = related.get_json()["items"]
    # Served from the list the writer stored (the API may filter it, never reorder it).
    stored = [n for n, _ in writer_list(writer, fresh.id)]
    served = [i["id"] for i in items]
    assert served and served == [n for n in stored if n in served]

    # Delete: gone from its key and from every list; a second delete is an unknown id.
    gone = client.delete(ARTICLE.format(fresh.id), query_string={"wait": "20"}, headers=AUTH)
    assert gone.status_code == 200 and gone.get_json()["status"] == "applied"
    assert client.get(f"/v1/articles/{fresh.id}/related").status_code == 404
    again = client.delete(ARTICLE.format(fresh.id), query_string={"wait": "20"}, headers=AUTH)
    error = error_of(again, 404)
    assert error["parameter"] == "article_id" and "unknown article id" in error["message"]

    drift = client.get("/readyz").get_json()["incremental"]
    assert (drift["upserts"], drift["deletes"], drift["base_articles"]) == (1, 1, N_ARTICLES)


def queued_ids(redis_client: redis.Redis) -> list[str]:
    return [entry.decode() for entry, _ in redis_client.xrange(keys.UPDATES)]


def writer_list(writer: Writer, article_id: str) -> list[tuple[str, float]]:
    index = writer.index
    assert index is not None
    return index.neighbours(article_id)


def test_every_admin_route_is_protected(published: str) -> None:
    from service import auth

    app: Flask = redis_app(published, ADMIN_TOKEN=TOKEN)
    rules = [r for r in app.url_map.iter_rules() if r.rule == "/v1/articles/<article_id>"]
    assert {m for r in rules for m in r.methods or ()} >= {"PUT", "DELETE"}
    for rule in rules:
        assert getattr(app.view_functions[rule.endpoint], auth.MARKER, False)
