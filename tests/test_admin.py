"""The admin surface: Bearer RECS_ADMIN_TOKEN on every writing route, disabled without one."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, jsonify

from service import ConfigError, auth
from service.redis import keys
from tests.service_fixtures import embedded_app, redis_app

TOKEN = "s3cret-admin-token-0123456789abcdef"
# Writing methods no browser-facing route may offer without the admin token.
ADMIN_METHODS = {"PUT", "PATCH", "DELETE"}
# POST routes that are public on purpose: a read with a body, and the widget's event beacon.
PUBLIC_POSTS = {"/v1/recommendations", "/v1/events"}


def with_admin_route(app: Flask) -> Flask:
    """``app`` plus a test-only admin route built with the shared decorator."""

    @app.post("/test-admin/<item>")
    @auth.admin_required
    def change(item: str) -> Any:
        return jsonify({"changed": item})

    return app


def refused(response: Any, status: int) -> None:
    assert response.status_code == status
    assert response.is_json and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    if status == 401:
        assert body["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    else:
        assert body["error"] == "not_found"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        TOKEN,
        "Bearer wrong-token-of-some-length",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN.upper()}",
        "Bearer \u00e9\u00e9\u00e9",
    ],
)
def test_missing_or_wrong_token_is_401(model_dir: Path, header: str | None) -> None:
    app = with_admin_route(embedded_app(model_dir, ADMIN_TOKEN=TOKEN))
    headers = {} if header is None else {"Authorization": header}
    refused(app.test_client().post("/test-admin/x", headers=headers), 401)


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "])
def test_the_right_token_passes(model_dir: Path, header: str) -> None:
    app = with_admin_route(embedded_app(model_dir, ADMIN_TOKEN=TOKEN))
    response = app.test_client().post("/test-admin/x", headers={"Authorization": header})
    assert response.status_code == 200 and response.get_json() == {"changed": "x"}


@pytest.mark.parametrize("configured", [None, ""])
def test_no_token_configured_disables_admin_routes(model_dir: Path, configured: str | None) -> None:
    app = with_admin_route(embedded_app(model_dir, ADMIN_TOKEN=configured))
    client = app.test_client()
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer "}):
        response = client.post("/test-admin/x", headers=headers)
        refused(response, 404)
        # Indistinguishable from a route that does not exist.
        assert response.get_json() == client.get("/no-such-route").get_json()


def test_weak_or_odd_tokens_refuse_to_start(model_dir: Path) -> None:
    for token in ("short", "x" * 15, ["a-list-of-tokens-0123"], True):
        with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
            embedded_app(model_dir, ADMIN_TOKEN=token)


def test_a_numeric_token_from_the_environment_works(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # from_prefixed_env parses JSON: an all-digit token arrives as an int.
    monkeypatch.setenv("RECS_ADMIN_TOKEN", "12345678901234567890")
    app = with_admin_route(embedded_app(model_dir))
    client = app.test_client()
    good = client.post("/test-admin/x", headers={"Authorization": "Bearer 12345678901234567890"})
    assert good.status_code == 200
    refused(client.post("/test-admin/x", headers={"Authorization": "Bearer 1234567890"}), 401)


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.check_bearer(f"Bearer {TOKEN}", TOKEN)
    assert not auth.check_bearer("Bearer nope", TOKEN)
    assert not auth.check_bearer(None, TOKEN)  # no header: still one comparison
    assert len(calls) == 3
    # Fixed-length digests are compared, so not even the token's length leaks.
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}


def test_every_writing_route_requires_the_admin_token(model_dir: Path) -> None:
    app = embedded_app(model_dir, ADMIN_TOKEN=TOKEN)
    for rule in app.url_map.iter_rules():
        methods = set(rule.methods or ())
        view = app.view_functions[rule.endpoint]
        protected = getattr(view, auth.MARKER, False)
        if methods & ADMIN_METHODS:
            assert protected, f"{rule.rule} {sorted(methods)} is not admin_required"
        if "POST" in methods and not protected:
            assert rule.rule in PUBLIC_POSTS, f"unexpected public POST {rule.rule}"


# ------------------------------------------------------------------ DELETE /v1/users/<id>


def has_user_deletion(app: Flask) -> bool:
    return any(r.rule == "/v1/users/<user_id>" for r in app.url_map.iter_rules())


def test_user_deletion_is_admin_only(redis_url: str, redis_client: redis.Redis) -> None:
    app = redis_app(redis_url, ADMIN_TOKEN=TOKEN)
    assert has_user_deletion(app)  # a deleted route fails here, never skips
    key = keys.user_history_key("reader-7")
    redis_client.rpush(key, "reuters-1", "reuters-2")
    client = app.test_client()
    refused(client.delete("/v1/users/reader-7"), 401)
    refused(client.delete("/v1/users/reader-7", headers={"Authorization": "Bearer no"}), 401)
    assert redis_client.exists(key) == 1  # refused requests touched nothing
    good = {"Authorization": f"Bearer {TOKEN}"}
    response = client.delete("/v1/users/reader-7", headers=good)
    assert response.status_code == 204
    assert redis_client.exists(key) == 0
    # Ids are validated after the token, before any key is built.
    bad = client.delete("/v1/users/a*b", headers=good)
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "user_id"


def test_user_deletion_is_disabled_without_a_token(
    redis_url: str, redis_client: redis.Redis
) -> None:
    app = redis_app(redis_url, ADMIN_TOKEN=None)
    assert has_user_deletion(app)
    key = keys.user_history_key("reader-8")
    redis_client.rpush(key, "reuters-1")
    client = app.test_client()
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        refused(client.delete("/v1/users/reader-8", headers=headers), 404)
    assert redis_client.exists(key) == 1


def test_reads_stay_public(model_dir: Path) -> None:
    app = embedded_app(model_dir, ADMIN_TOKEN=TOKEN)
    client = app.test_client()
    for path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
        assert client.get(path).status_code == 200, path
