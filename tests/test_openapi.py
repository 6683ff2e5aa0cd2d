"""The served OpenAPI document: valid, complete for the app's routes, true to its answers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from models.artifact import LoadedModel
from service.openapi import spec_bytes
from tests.paths import REPO
from tests.service_fixtures import redis_app

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
jsonschema = pytest.importorskip("jsonschema")

IGNORED_METHODS = {"HEAD", "OPTIONS"}  # added to every route by Flask
IGNORED_ENDPOINTS = {"static"}  # Flask's static files, when service/static exists


@pytest.fixture(scope="module")
def spec(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    return body


def schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """A component schema that resolves its ``#/components/...`` references."""
    return {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}


def validate(instance: Any, spec: dict[str, Any], name: str) -> None:
    jsonschema.Draft202012Validator(
        schema(spec, name), format_checker=jsonschema.FormatChecker()
    ).validate(instance)


def test_spec_is_valid_openapi(spec: dict[str, Any]) -> None:
    openapi_spec_validator.validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_served_document_is_the_packaged_file(spec: dict[str, Any]) -> None:
    import json

    assert spec == json.loads(spec_bytes())
    assert (REPO / "service" / "openapi.json").read_bytes() == spec_bytes()


def test_spec_paths_match_the_url_map(app: Flask, spec: dict[str, Any]) -> None:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(set(rule.methods or ()) - IGNORED_METHODS)
    documented = {
        path: {method.upper() for method in item if method != "parameters"}
        for path, item in spec["paths"].items()
    }
    assert documented == routes


def test_every_path_parameter_is_documented(app: Flask, spec: dict[str, Any]) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in set(rule.methods or ()) - IGNORED_METHODS:
            operation = spec["paths"][path][method.lower()]
            documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert documented == set(rule.arguments), (path, method)


def test_related_query_parameters_are_documented(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/v1/articles/{article_id}/related"]["get"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(query) == {"k", "exclude", "section", "max_age_days"}
    assert query["k"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 50, "default": 6}
    assert set(operation["responses"]) >= {"200", "304", "400", "404", "405", "500", "503"}


def test_every_operation_documents_errors(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert {"405", "500"} <= set(operation["responses"]), (path, method)
            assert operation["operationId"]


def test_related_answers_match_the_schema(
    app: Flask, spec: dict[str, Any], loaded: LoadedModel
) -> None:
    client = app.test_client()
    for article in loaded.articles[:25]:
        body = client.get(f"/v1/articles/{article.id}/related", query_string={"k": 50}).get_json()
        validate(body, spec, "RelatedResponse")


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/v1/articles/no-such/related", 404),
        ("/v1/articles/a-1/related?k=0", 400),
        ("/v1/articles/a-1/related?exclude=bad%20id", 400),
        ("/nowhere", 404),
    ],
)
def test_error_answers_match_the_schema(
    app: Flask, spec: dict[str, Any], url: str, status: int
) -> None:
    response = app.test_client().get(url)
    assert response.status_code == status
    validate(response.get_json(), spec, "Error")


def test_ops_answers_match_the_schema(app: Flask, spec: dict[str, Any]) -> None:
    client = app.test_client()
    validate(client.get("/healthz").get_json(), spec, "Health")
    validate(client.get("/readyz").get_json(), spec, "Ready")
    validate(client.post("/readyz").get_json(), spec, "Error")
    not_ready = redis_app("redis://127.0.0.1:1/0").test_client().get("/readyz")
    assert not_ready.status_code == 503
    validate(not_ready.get_json(), spec, "NotReady")


ADMIN_TOKEN = "openapi-admin-token-0123456789"


def test_readiness_with_drift_matches_the_schema(
    spec: dict[str, Any], loaded: LoadedModel, redis_url: str, redis_client: Any
) -> None:
    from service.redis import keys, publish

    publish.publish(redis_client, loaded)
    redis_client.hset(keys.info_key(loaded.version), mapping={"upserts": 3, "deletes": 1})
    body = redis_app(redis_url).test_client().get("/readyz").get_json()
    assert body["incremental"]["upserts"] == 3
    validate(body, spec, "Ready")


def test_article_updates_are_admin_operations(spec: dict[str, Any]) -> None:
    item = spec["paths"]["/v1/articles/{article_id}"]
    for method in ("put", "delete"):
        operation = item[method]
        assert operation["security"] == [{"adminToken": []}]
        assert {"200", "202", "400", "401", "404", "501", "503"} <= set(operation["responses"])
        query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert query == {"wait"}
    assert "413" in item["put"]["responses"]


def test_article_update_answers_match_the_schema(
    spec: dict[str, Any], loaded: LoadedModel, redis_url: str, redis_client: Any
) -> None:
    from service.redis import publish

    publish.publish(redis_client, loaded)
    client = redis_app(redis_url, ADMIN_TOKEN=ADMIN_TOKEN).test_client()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # No writer runs: queued.
    queued = client.put("/v1/articles/new-1", json={"title": "Cocoa"}, headers=auth)
    assert queued.status_code == 202
    validate(queued.get_json(), spec, "UpdateQueued")
    gone = client.delete("/v1/articles/new-1", headers=auth)
    assert gone.status_code == 202
    validate(gone.get_json(), spec, "UpdateQueued")
    for response, status in (
        (client.put("/v1/articles/new-1", json={"tags": "x"}, headers=auth), 400),
        (client.put("/v1/articles/new-1", json={"title": "Cocoa"}), 401),
        (client.delete("/v1/articles/new-1", query_string={"wait": "x"}, headers=auth), 400),
    ):
        assert response.status_code == status
        validate(response.get_json(), spec, "Error")


def test_rule_routes_are_admin_operations(spec: dict[str, Any]) -> None:
    for path in ("/v1/rules", "/v1/rules/{rule_id}", "/v1/rules/{rule_id}/history"):
        for method, operation in spec["paths"][path].items():
            assert operation["security"] == [{"adminToken": []}], (path, method)
            assert {"401", "404", "503"} <= set(operation["responses"]), (path, method)
    put = spec["paths"]["/v1/rules/{rule_id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RuleBody"
    }
    assert spec["components"]["schemas"]["RuleBody"]["additionalProperties"] is False


def test_rule_answers_match_the_schema(
    spec: dict[str, Any], loaded: LoadedModel, redis_url: str, redis_client: Any
) -> None:
    from service.redis import publish

    publish.publish(redis_client, loaded)
    client = redis_app(redis_url, ADMIN_TOKEN=ADMIN_TOKEN).test_client()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {
        "scope": {"section": "Deals"},
        "hide": [loaded.articles[1].id],
        "hide_tags": ["cocoa"],
        "hide_sections": ["Markets"],
        "pin": [{"id": loaded.articles[0].id, "position": 0}, {"id": "gone", "position": 3}],
        "max_age_days": 30,
        "hide_box": False,
        "valid_from": "2026-12-01T06:00:00Z",
        "valid_until": "2026-12-08T00:00:00+01:00",
        "note": "why",
    }
    validate(body, spec, "RuleBody")
    created = client.put("/v1/rules/r-1", json=body, headers=auth)
    assert created.status_code == 201
    validate(created.get_json(), spec, "Rule")
    validate(client.get("/v1/rules", headers=auth).get_json(), spec, "RuleList")
    validate(client.get("/v1/rules/r-1", headers=auth).get_json(), spec, "RuleListed")
    client.delete("/v1/rules/r-1", headers=auth)
    validate(client.get("/v1/rules/r-1/history", headers=auth).get_json(), spec, "RuleHistory")
    for response in (
        client.put("/v1/rules/r-1", json={"hide": 1}, headers=auth),
        client.get("/v1/rules/r-1", headers=auth),
        client.get("/v1/rules"),
    ):
        assert response.status_code in (400, 401, 404)
        validate(response.get_json(), spec, "Error")
