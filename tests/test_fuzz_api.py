"""Hostile input: the API fuzzed from its own OpenAPI document, and explicit limit tests.

Schemathesis generates requests from ``service/openapi.json`` (valid and invalid ones), runs
them against the WSGI app in embedded mode and in Redis mode, and checks that nothing answers
5xx and that every answer (status, headers, body) is what the document says. The examples are
bounded per operation so CI stays fast; hypothesis derandomises them so a failure reproduces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from models.artifact import LoadedModel
from models.records import ID_PATTERN
from service import create_app, keys
from service.store.base import ArticleMeta, Neighbour, Store, VersionInfo
from service.store.local_store import LocalStore
from tests.service_fixtures import embedded_app, loaded_model, redis_app, trained_model_dir

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

MAX_EXAMPLES = 30
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
RELATED = "/v1/articles/{}/related"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return loaded_model(tmp_path_factory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model_dir(tmp_path_factory)


@pytest.fixture(params=["embedded", "redis"])
def api_schema(
    request: pytest.FixtureRequest, model_dir: Path, loaded: LoadedModel
) -> Iterator[Any]:
    """The app's own OpenAPI document, bound to the app, in one of the two serving modes."""
    if request.param == "embedded":
        app = embedded_app(model_dir)
    else:
        from service import publish

        url = request.getfixturevalue("redis_url")
        client: redis.Redis = request.getfixturevalue("redis_client")
        publish.publish(client, loaded)
        app = redis_app(url, ADMIN_TOKEN=ADMIN_TOKEN)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
    )
    known = list(loaded.model.ids_[:20])

    # Random ids almost never exist: half the time use a real one, so 200 answers (and the
    # Redis read path) are fuzzed too, not only 404s.
    @schema.hook
    def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
        value = path_parameters.get("article_id")
        if isinstance(value, str) and len(value) % 2 == 0 and ID_PATTERN.fullmatch(value):
            path_parameters["article_id"] = known[len(value) % len(known)]
        return path_parameters

    yield schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_api_matches_its_spec_and_never_fails(case: Any) -> None:
    case.call_and_validate()


# ---------------------------------------------------------------------------------- limits


class SpyStore(Store):
    """A local store that records every id and version that reached it."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def current_version(self) -> VersionInfo | None:
        return self.inner.current_version()

    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        self.seen += [version, article_id]
        return self.inner.neighbours(version, article_id)

    def articles(self, version: str, ids: Sequence[str]) -> list[ArticleMeta | None]:
        self.seen += [version, *ids]
        return self.inner.articles(version, ids)

    def ping(self) -> bool:
        return True

    def latest(self, version: str, section: str | None, limit: int) -> list[str]:
        self.seen.append(version)
        return self.inner.latest(version, section, limit)


HOSTILE_IDS = [
    "a" * 129,
    "*",
    "rs:*",
    "a b",
    "a\nb",
    "a\r\nSET x y",
    "%00",
    "..",
    "é",
    "a?b",
    "[a-z]",
    "a\\b",
    "",
]


@pytest.fixture(scope="module")
def spy_app(loaded: LoadedModel) -> tuple[Flask, SpyStore]:
    spy = SpyStore(LocalStore(loaded))
    return create_app({"TESTING": True, "STORE": spy}), spy


def test_hostile_ids_never_reach_the_store(spy_app: tuple[Flask, SpyStore]) -> None:
    app, spy = spy_app
    client = app.test_client()
    for bad in HOSTILE_IDS:
        path = RELATED.format(bad.replace("\n", "%0A").replace("\r", "%0D"))
        response = client.get(path)
        assert response.status_code in (400, 404), (bad, response.status_code)
        assert response.is_json and response.get_json()["error"]
        response = client.get(RELATED.format("ok-id"), query_string={"exclude": bad})
        assert response.status_code in (400, 404) or bad == "", (bad, response.status_code)
    for value in spy.seen:
        assert ID_PATTERN.fullmatch(value) or keys.VERSION_PATTERN.fullmatch(value), value


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"k": "0"}, "k"),
        ({"k": "51"}, "k"),
        ({"k": "1e3"}, "k"),
        ({"k": "²"}, "k"),
        ({"k": "9" * 40}, "k"),
        ({"max_age_days": "-1"}, "max_age_days"),
        ({"section": "x" * 201}, "section"),
        ({"exclude": ",".join(f"id-{n}" for n in range(101))}, "exclude"),
    ],
)
def test_bounded_parameters_name_themselves(
    spy_app: tuple[Flask, SpyStore], loaded: LoadedModel, query: dict[str, str], parameter: str
) -> None:
    app, _ = spy_app
    response = app.test_client().get(RELATED.format(loaded.model.ids_[0]), query_string=query)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "bad_request" and body["parameter"] == parameter


def test_request_bodies_are_size_limited(model_dir: Path) -> None:
    app = embedded_app(model_dir, MAX_CONTENT_LENGTH=4096)
    client = app.test_client()
    big = json.dumps({"history": ["a" * 100] * 100})
    for path in ("/v1/recommendations", "/v1/events"):
        rule = any(r.rule == path for r in app.url_map.iter_rules())
        if not rule:
            continue
        response = client.post(path, data=big, content_type="application/json")
        assert response.status_code == 413, (path, response.get_json())
        assert response.is_json and response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"history": "reuters-1"}, "history"),
        ({"history": [1, 2]}, "history[0]"),
        ({"k": "six"}, "k"),
        ({"k": True}, "k"),
        ({"section": 5}, "section"),
        ({"exclude": {"a": 1}}, "exclude"),
        ({"user_id": ["x"]}, "user_id"),
        ([1, 2, 3], "body"),
    ],
)
def test_json_type_errors_name_the_field(model_dir: Path, body: Any, parameter: str) -> None:
    app = embedded_app(model_dir)
    if not any(r.rule == "/v1/recommendations" for r in app.url_map.iter_rules()):
        pytest.skip("no /v1/recommendations in this build")
    response = app.test_client().post("/v1/recommendations", json=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["parameter"] == parameter


def test_every_redis_key_from_input_is_validated() -> None:
    """The key builders refuse what could escape their namespace or act as a SCAN pattern."""
    for bad in ("", "a:b", "a*", "a?", "[ab]", "a b", "x" * 101, "a\nb"):
        for build in (keys.info_key, keys.index_key, keys.version_prefix, keys.version_pattern):
            with pytest.raises(ValueError):
                build(bad)
    for bad in ("", "a b", "a*", "x" * 129, "a\nb", "é"):
        with pytest.raises(ValueError):
            keys.user_history_key(bad)
    assert keys.user_history_key("reader-1") == "rs:u:reader-1:h"
