"""Health, readiness, metrics, error handling and configuration of the API app."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from models.artifact import LoadedModel
from service import ConfigError, create_app
from service.store.base import Neighbour
from service.store.local import LocalStore
from tests.service_fixtures import embedded_app, redis_app

UNREACHABLE = "redis://127.0.0.1:1/0"
RELATED = "/v1/articles/{}/related"


@pytest.fixture
def app(model_dir: Path) -> Flask:
    """A fresh app per test (not conftest's one per module): the metric tests count from 0."""
    return embedded_app(model_dir)


def samples(app: Flask, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Current samples of one metric, keyed by their sorted labels."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


# ------------------------------------------------------------------------------- health


def test_healthz(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_does_not_need_the_store() -> None:
    response = redis_app(UNREACHABLE).test_client().get("/healthz")
    assert response.status_code == 200


def test_readyz_embedded(app: Flask, loaded: LoadedModel) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "model_version": loaded.version,
        "built_at": loaded.manifest["created_at"],
        "published_at": None,
        "articles": len(loaded.articles),
    }


def test_readyz_redis_unreachable_is_503() -> None:
    response = redis_app(UNREACHABLE).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "not_ready",
        "reason": "the article store is unreachable",
    }


def test_an_outage_is_logged_once_while_the_breaker_fails_fast(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = redis_app(UNREACHABLE, BREAKER_COOLDOWN=30, VERSION_TTL=0).test_client()
    with caplog.at_level(logging.WARNING, logger="service"):
        statuses = [client.get(RELATED.format("a-1")).status_code for _ in range(5)]
    assert statuses == [503] * 5
    logged = [r for r in caplog.records if r.getMessage().startswith("store unavailable")]
    assert len(logged) == 1, [r.getMessage() for r in logged]


def test_readyz_redis_without_a_version_is_503(redis_url: str) -> None:
    response = redis_app(redis_url).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "no model version is published"


def test_readyz_redis_published(
    redis_url: str, redis_client: redis.Redis, loaded: LoadedModel
) -> None:
    from service.redis import publish

    publish.publish(redis_client, loaded)
    body = redis_app(redis_url).test_client().get("/readyz").get_json()
    assert body["status"] == "ready"
    assert body["model_version"] == loaded.version
    assert body["published_at"]  # set by the publish, unlike embedded mode


def test_readyz_reports_incremental_drift_in_redis_mode(
    redis_url: str, redis_client: redis.Redis, loaded: LoadedModel
) -> None:
    from service.redis import keys, publish

    publish.publish(redis_client, loaded)
    client = redis_app(redis_url, VERSION_TTL=0).test_client()
    fresh = client.get("/readyz").get_json()
    assert fresh["incremental"] == {
        "upserts": 0,
        "deletes": 0,
        "base_articles": len(loaded.articles),
        "share": 0.0,
        "retrain_due": False,
    }
    # The writer's counters, as service/redis/queue.py keeps them in the version's info hash.
    info = keys.info_key(loaded.version)
    redis_client.hset(info, mapping={"upserts": 30, "deletes": 10, "base_articles": 400})
    redis_client.hset(info, "articles", 420)
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["articles"] == 420
    assert body["incremental"] == {
        "upserts": 30,
        "deletes": 10,
        "base_articles": 400,
        "share": 0.1,
        "retrain_due": True,
    }
    # Advisory only: still ready; the threshold is a setting.
    lenient = redis_app(redis_url, VERSION_TTL=0, RETRAIN_DRIFT=0.25).test_client()
    response = lenient.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["incremental"]["retrain_due"] is False


def test_readyz_has_no_drift_in_embedded_mode(app: Flask) -> None:
    assert "incremental" not in app.test_client().get("/readyz").get_json()


def test_retrain_drift_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setenv("RECS_RETRAIN_DRIFT", "0.25")
    assert embedded_app(model_dir).config["RETRAIN_DRIFT"] == 0.25
    monkeypatch.setenv("RECS_RETRAIN_DRIFT", "lots")
    with pytest.raises(ConfigError, match="RETRAIN_DRIFT"):
        embedded_app(model_dir)


# ------------------------------------------------------------------------------- metrics


def test_metrics_count_requests_by_endpoint_method_and_status(
    app: Flask, loaded: LoadedModel
) -> None:
    client = app.test_client()
    article = loaded.articles[0].id
    for _ in range(3):
        client.get(RELATED.format(article))
    client.get(RELATED.format(article), query_string={"k": 0})
    client.get(RELATED.format("no-such-article"))
    client.get("/nowhere")
    client.post("/healthz")
    counts = samples(app, "recs_http_requests_total")
    rule = "/v1/articles/<article_id>/related"

    def count(endpoint: str, status: str, method: str = "GET") -> float:
        key = (("endpoint", endpoint), ("method", method), ("status", status))
        return counts.get(key, 0.0)

    assert count(rule, "200") == 3
    assert count(rule, "400") == 1
    assert count(rule, "404") == 1
    assert count("<unmatched>", "404") == 1
    # A method mismatch matches no rule either.
    assert count("<unmatched>", "405", "POST") == 1
    # Article ids never become label values (unbounded cardinality).
    assert not any(article in str(key) for key in counts)
    latency = samples(app, "recs_http_request_duration_seconds_count")
    assert latency[(("endpoint", rule), ("status", "200"))] == 3


def test_metrics_format_and_version_gauge(app: Flask, loaded: LoadedModel) -> None:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    versions = samples(app, "recs_model_version_info")
    key = (("built_at", loaded.manifest["created_at"]), ("version", loaded.version))
    assert versions == {key: 1.0}


def test_metrics_count_store_errors() -> None:
    app = redis_app(UNREACHABLE)
    client = app.test_client()
    client.get(RELATED.format("reuters-1"))
    client.get("/readyz")
    errors = samples(app, "recs_store_errors_total")
    # /related, /readyz, and the scrape's own version lookup.
    assert errors[()] >= 2
    assert samples(app, "recs_model_version_info") == {}
    assert (
        samples(app, "recs_http_requests_total")[
            (
                ("endpoint", "/v1/articles/<article_id>/related"),
                ("method", "GET"),
                ("status", "503"),
            )
        ]
        == 1
    )


def test_each_app_has_its_own_registry(model_dir: Path) -> None:
    first, second = embedded_app(model_dir), embedded_app(model_dir)
    first.test_client().get("/healthz")
    key = (("endpoint", "/healthz"), ("method", "GET"), ("status", "200"))
    assert samples(first, "recs_http_requests_total")[key] == 1
    assert key not in samples(second, "recs_http_requests_total")


# ------------------------------------------------------------------------------- errors


def test_unknown_route_is_json_404(app: Flask) -> None:
    response = app.test_client().get("/v2/whatever")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "no such endpoint"}


def test_wrong_method_is_json_405(app: Flask) -> None:
    response = app.test_client().delete("/readyz")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}


@pytest.mark.parametrize("path", ["/v1/events", "/v1/recommendations", RELATED.format("a-1")])
def test_options_without_cors_is_an_empty_answer_of_no_type(app: Flask, path: str) -> None:
    response = app.test_client().options(path)
    assert response.status_code == 200 and response.data == b""
    assert "Content-Type" not in response.headers  # not an empty "text/html" page
    assert "OPTIONS" in response.headers["Allow"]


class BrokenStore(LocalStore):
    """A store with a bug: its neighbour reads raise something the API does not expect."""

    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        raise KeyError("secret-internal-detail /etc/passwd")


def test_unexpected_error_is_generic_500_and_logged(
    caplog: pytest.LogCaptureFixture, loaded: LoadedModel
) -> None:
    app = create_app({"STORE": BrokenStore(loaded)})
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get(RELATED.format(loaded.articles[0].id))
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal", "message": "internal error"}
    assert b"secret" not in response.data and b"Traceback" not in response.data
    assert any(
        r.exc_info and "secret-internal-detail" in str(r.exc_info[1]) for r in caplog.records
    )


def test_500_even_when_testing_propagation_is_on(loaded: LoadedModel) -> None:
    # TESTING propagates unhandled exceptions in Flask; ours are all handled.
    app = create_app({"STORE": BrokenStore(loaded), "TESTING": True})
    assert app.test_client().get(RELATED.format(loaded.articles[0].id)).status_code == 500


# ------------------------------------------------------------------------------- config


def test_no_data_source_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECS_REDIS_URL", raising=False)
    monkeypatch.delenv("RECS_MODEL_DIR", raising=False)
    with pytest.raises(ConfigError, match="set RECS_REDIS_URL .* or RECS_MODEL_DIR"):
        create_app()


def test_bad_model_dir_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RECS_MODEL_DIR"):
        create_app({"MODEL_DIR": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CACHE_MAX_AGE", -1),
        ("CACHE_MAX_AGE", "soon"),
        ("RETRY_AFTER", True),
        ("MAX_K", 0),
        ("DEFAULT_K", 51),
        ("CLOCK", "now"),
        ("CORS_ORIGINS", 5),
        ("VERSION_TTL", -1),
        ("VERSION_TTL", "1s"),
        ("RESPONSE_CACHE_SIZE", -5),
        ("RETRAIN_DRIFT", 0),
        ("RETRAIN_DRIFT", -0.1),
        ("RETRAIN_DRIFT", 101),
        ("RETRAIN_DRIFT", "a tenth"),
        ("RETRAIN_DRIFT", True),
        ("RETRAIN_DRIFT", float("nan")),
    ],
)
def test_bad_settings_fail_at_start(model_dir: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        embedded_app(model_dir, **{key: value})


def test_settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path, loaded: LoadedModel
) -> None:
    monkeypatch.delenv("RECS_REDIS_URL", raising=False)
    monkeypatch.setenv("RECS_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("RECS_CACHE_MAX_AGE", "60")
    monkeypatch.setenv("RECS_DEFAULT_K", "3")
    monkeypatch.setenv("RECS_CORS_ORIGINS", "https://a.example,https://b.example")
    app = create_app()
    assert isinstance(app.extensions["recs_store"], LocalStore)
    response = app.test_client().get(
        RELATED.format(loaded.articles[0].id), headers={"Origin": "https://b.example"}
    )
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert len(response.get_json()["items"]) == 3
    assert response.headers["Access-Control-Allow-Origin"] == "https://b.example"


def test_redis_url_wins_over_model_dir(model_dir: Path) -> None:
    from service.redis.store import RedisStore
    from service.store.cache import VersionCache

    app = create_app({"REDIS_URL": UNREACHABLE, "MODEL_DIR": str(model_dir)})
    store = app.extensions["recs_store"]
    assert isinstance(store, VersionCache) and isinstance(store.inner, RedisStore)
    uncached = create_app({"REDIS_URL": UNREACHABLE, "VERSION_TTL": 0})
    assert isinstance(uncached.extensions["recs_store"], RedisStore)


def test_create_app_has_no_import_time_app() -> None:
    import service

    assert not any(isinstance(value, Flask) for value in vars(service).values())


def test_metrics_in_prometheus_multiprocess_mode(model_dir: Path, tmp_path: Path) -> None:
    """With several gunicorn workers, /metrics sums every worker's files."""
    # prometheus_client picks its value store at import: a fresh interpreter is needed.
    script = (
        "from service import create_app\n"
        f"app = create_app({{'MODEL_DIR': {str(model_dir)!r}}})\n"
        "client = app.test_client()\n"
        "client.get('/healthz')\n"
        "print(client.get('/metrics').get_data(as_text=True))\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("RECS_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert 'recs_http_requests_total{endpoint="/healthz",method="GET",status="200"} 1.0' in (
        done.stdout
    )
    assert "recs_model_version_info{" in done.stdout
    assert any(tmp_path.iterdir())  # the per-process files
