"""Deployment files: docker-compose.yml, Dockerfile, gunicorn.conf.py (no Docker here)."""

from __future__ import annotations

import json
import re
import runpy
import shlex
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from flask import Flask

from benchmarks.harness import Processes, api_env, start_gunicorn
from scripts.common import CliError
from scripts.serve_cmd import build_app, serve
from service.store.local import LocalStore
from tests.paths import REPO, SAMPLE_ARTICLES
from tests.service_fixtures import corpus_file, redis_app, trained_model_dir

yaml = pytest.importorskip("yaml")

REDIS_IN_COMPOSE = "redis://redis:6379/0"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Service -> condition (the short list form means service_started)."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def command(service: dict[str, Any]) -> list[str]:
    raw = service["command"]
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


# ------------------------------------------------------------------------------- compose


def test_compose_has_the_four_services(services: dict[str, Any]) -> None:
    # Without a profile; the `scale` profile's services are checked in tests/test_cluster.py.
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == {"redis", "trainer", "api", "updater"}


def test_redis_is_redis_7_with_healthcheck_and_persistence(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    redis = services["redis"]
    assert re.fullmatch(r"redis:7(\.\d+)*(-[\w.]+)?", redis["image"])
    test = redis["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "redis-cli" in " ".join(test) and "ping" in test
    args = command(redis)
    assert args[args.index("--appendonly") + 1] == "yes"
    volumes = [v.split(":") for v in redis["volumes"]]
    assert ["redis-data", "/data"] in volumes  # the AOF lives on a named volume
    assert "redis-data" in compose["volumes"]


def test_trainer_trains_the_bundled_sample_and_publishes(services: dict[str, Any]) -> None:
    trainer = services["trainer"]
    args = command(trainer)
    assert args[:2] == ["recs", "train"]
    articles = args[args.index("--articles") + 1]
    assert (REPO / articles).resolve() == SAMPLE_ARTICLES  # copied into the image's /app
    assert args[args.index("--publish") + 1] == REDIS_IN_COMPOSE
    assert args[args.index("--out") + 1].startswith("/models/")
    assert depends_on(trainer) == {"redis": "service_healthy"}
    assert trainer.get("restart", "no") == "no"  # one-shot


def test_api_waits_for_redis_and_a_successful_trainer(services: dict[str, Any]) -> None:
    api = services["api"]
    assert depends_on(api) == {
        "redis": "service_healthy",
        "trainer": "service_completed_successfully",
    }
    assert api["environment"]["RECS_REDIS_URL"] == REDIS_IN_COMPOSE
    assert any(str(port).split(":")[-1] == "8000" for port in api["ports"])
    assert api["environment"]["RECS_BIND"].endswith(":8000")
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_updater_runs_the_one_update_writer_on_the_trainers_model(
    services: dict[str, Any],
) -> None:
    updater = services["updater"]
    args = command(updater)
    assert args[:2] == ["recs", "worker"]
    assert args[args.index("--redis-url") + 1] == REDIS_IN_COMPOSE
    trainer = command(services["trainer"])
    assert args[args.index("--model") + 1] == trainer[trainer.index("--out") + 1]
    assert ["models", "/models"] in [v.split(":") for v in updater["volumes"]]
    assert depends_on(updater) == {
        "redis": "service_healthy",
        "trainer": "service_completed_successfully",
    }
    assert updater["restart"] == "unless-stopped"
    assert "deploy" not in updater  # never more than one replica: one writer
    assert updater["image"] == services["api"]["image"]


def test_updater_command_applies_a_queued_update(
    services: dict[str, Any],
    redis_url: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The compose trainer, then the updater's exact arguments (with --once) on the test Redis."""
    from scripts.cli import cli
    from service.redis import queue as updates
    from service.redis.versions import live_info

    train = command(services["trainer"])[1:]
    train[train.index("--articles") + 1] = str(corpus_file(tmp_path_factory))
    train[train.index("--out") + 1] = str(tmp_path / "current")
    train[train.index("--publish") + 1] = redis_url
    assert CliRunner().invoke(cli, train).exit_code == 0
    client = redis.Redis.from_url(redis_url)
    entry = updates.enqueue_delete(client, "reuters-1", by="api")
    worker = command(services["updater"])[1:]
    worker[worker.index("--redis-url") + 1] = redis_url
    worker[worker.index("--model") + 1] = str(tmp_path / "current")
    result = CliRunner().invoke(cli, [*worker, "--once"])
    assert result.exit_code == 0, result.output
    ack = updates.wait_applied(client, entry, 1.0)
    assert ack is not None and ack["status"] == "applied"
    assert (live_info(client) or {}).get("deletes") == "1"


def test_api_and_trainer_share_the_dockerfile_image(services: dict[str, Any]) -> None:
    assert services["api"]["image"] == services["trainer"]["image"]
    for name in ("api", "trainer"):
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (REPO / context / "Dockerfile").is_file()


def test_start_order_is_redis_trainer_api(services: dict[str, Any]) -> None:
    order: list[str] = []
    # The default stack; the `scale` profile's order is checked in tests/test_cluster.py.
    pending = {name: service for name, service in services.items() if "profiles" not in service}
    while pending:
        ready = sorted(n for n, s in pending.items() if set(depends_on(s)) <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order.extend(ready)
        for name in ready:
            del pending[name]
    assert order == ["redis", "trainer", "api", "updater"]


def test_trainer_command_trains_publishes_and_the_api_serves_it(
    services: dict[str, Any],
    redis_url: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The compose trainer's exact arguments through the real CLI, on the test corpus/Redis."""
    from scripts.cli import cli

    train = cli.commands["train"]
    assert any("--publish" in p.opts for p in train.params)
    args = command(services["trainer"])[1:]
    args[args.index("--articles") + 1] = str(corpus_file(tmp_path_factory))
    args[args.index("--out") + 1] = str(tmp_path / "current")
    args[args.index("--publish") + 1] = redis_url
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    client = redis_app(redis_url).test_client()
    assert client.get("/readyz").status_code == 200
    response = client.get("/v1/articles/reuters-1/related?k=2")
    assert response.status_code == 200 and len(response.get_json()["items"]) == 2


# ------------------------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_base_user_and_command(dockerfile: list[tuple[str, str]]) -> None:
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in dockerfile if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(i == "RUN" and "pip install '.[dask]'" in a for i, a in dockerfile)
    cmd = [args for instruction, args in dockerfile if instruction == "CMD"][-1]
    assert cmd == '["gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]'


def test_dockerfile_copies_what_exists(dockerfile: list[tuple[str, str]]) -> None:
    sources = []
    for instruction, args in dockerfile:
        if instruction == "COPY":
            sources.extend(args.split()[:-1])
    for source in sources:
        assert (REPO / source).exists(), source
    # The trainer's corpus and the server's config must be in the image.
    assert "data/sample" in sources and "gunicorn.conf.py" in sources


# ------------------------------------------------------------------------------- gunicorn


def load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("RECS_BIND", "RECS_WORKERS", "WEB_CONCURRENCY", "RECS_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "gunicorn.conf.py"))


def test_gunicorn_conf_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(monkeypatch)
    assert conf["bind"] == "127.0.0.1:8000"
    assert 1 <= conf["workers"] <= 8
    assert conf["timeout"] == 30
    assert 0 < conf["graceful_timeout"] <= conf["timeout"]
    assert conf["max_requests"] == 200_000
    assert 0 < conf["max_requests_jitter"] < conf["max_requests"]
    assert conf["preload_app"] is False


def test_gunicorn_conf_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(monkeypatch, RECS_BIND="0.0.0.0:9000", RECS_WORKERS="3")
    assert conf["bind"] == "0.0.0.0:9000"
    assert conf["workers"] == 3
    assert load_gunicorn_conf(monkeypatch, WEB_CONCURRENCY="5")["workers"] == 5
    with pytest.raises(SystemExit, match="RECS_WORKERS"):
        load_gunicorn_conf(monkeypatch, RECS_WORKERS="many")


def test_gunicorn_accepts_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.config import Config

    conf = load_gunicorn_conf(monkeypatch)
    config = Config()
    settings = {k: v for k, v in conf.items() if k in config.settings}
    assert {"bind", "workers", "timeout", "graceful_timeout", "max_requests"} <= set(settings)
    for name, value in settings.items():
        config.set(name, value)  # gunicorn's own validation
    assert config.address == [("127.0.0.1", 8000)]
    assert callable(config.child_exit)


def test_gunicorn_prepares_the_prometheus_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = load_gunicorn_conf(monkeypatch)
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    conf["on_starting"](None)
    assert directory.is_dir() and not any(directory.iterdir())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf["on_starting"](None)  # not in use: nothing to do


def test_the_image_runs_prometheus_in_multiprocess_mode(dockerfile: list[tuple[str, str]]) -> None:
    env = " ".join(args for instruction, args in dockerfile if instruction == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/" in env


def test_gunicorn_app_string_builds_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from gunicorn.util import import_app

    monkeypatch.delenv("RECS_REDIS_URL", raising=False)
    monkeypatch.setenv("RECS_MODEL_DIR", str(trained_model_dir(tmp_path_factory)))
    app = import_app("service:create_app()")
    assert isinstance(app, Flask)
    assert app.test_client().get("/readyz").status_code == 200


# ------------------------------------------------------------------------------- recs serve


def test_serve_builds_an_embedded_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # An explicit --model wins over a RECS_REDIS_URL in the environment.
    monkeypatch.setenv("RECS_REDIS_URL", "redis://127.0.0.1:1/0")
    app = build_app(trained_model_dir(tmp_path_factory), None)
    assert isinstance(app.extensions["recs_store"], LocalStore)


def test_serve_without_a_source_is_a_cli_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECS_REDIS_URL", raising=False)
    monkeypatch.delenv("RECS_MODEL_DIR", raising=False)
    with pytest.raises(CliError, match="RECS_REDIS_URL"):
        build_app(None, None)
    result = CliRunner().invoke(serve, [])
    assert result.exit_code == 2
    assert "RECS_MODEL_DIR" in result.output


def test_serve_with_a_bad_model_dir_is_a_cli_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, ["--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "missing" in result.output


def test_serve_help() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--model", "--redis-url"):
        assert option in result.output


# ------------------------------------------------------------------------------- live server


def test_gunicorn_serves_the_api(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The Dockerfile's command, for real: two workers, embedded mode, stopped with SIGTERM."""
    settings = {"WORKERS": 2, "MODEL_DIR": trained_model_dir(tmp_path_factory)}
    env = api_env(settings, prometheus_dir=tmp_path / "prometheus")
    procs = Processes()
    # No flags: the conf file reads RECS_BIND (set by the harness) and RECS_WORKERS.
    base, server = start_gunicorn(procs, env, stdout=subprocess.PIPE)
    try:
        with urllib.request.urlopen(f"{base}/v1/articles/reuters-1/related?k=2") as response:
            body = json.loads(response.read())
            assert response.headers["Cache-Control"].startswith("public")
        assert body["article_id"] == "reuters-1" and len(body["items"]) == 2
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/v1/articles/no-such/related")
        assert missing.value.code == 404
        assert json.loads(missing.value.read())["error"] == "not_found"
        for _ in range(6):
            urllib.request.urlopen(f"{base}/healthz").close()
        with urllib.request.urlopen(f"{base}/metrics") as response:
            metrics = response.read().decode()
        # Whichever worker answers the scrape, it reports every worker's requests.
        assert 'recs_http_requests_total{endpoint="/healthz",method="GET",status="200"} 6.0' in (
            metrics
        )
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=40)[0].decode(errors="replace")
        procs.stop_all()  # only if it did not stop
    assert server.returncode == 0, output
    assert "GET /v1/articles/reuters-1/related" in output  # the access log on stdout
