"""The benchmarks package: every benchmark parses its arguments from the repository root, goes
through the shared harness for Redis, and stays out of the installed packages."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from benchmarks.harness import NO_RATE_LIMITS, Processes, RedisServer, api_env, free_port
from benchmarks.load import percentile
from tests.paths import REPO

BENCHMARKS = sorted(
    path.stem for path in (REPO / "benchmarks").glob("bench_*.py") if path.stem != "bench_bare_app"
)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_has_a_command_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_benchmarks_run_as_modules_from_the_repository_root() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_publish", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_no_benchmark_imports_redis_py() -> None:
    """Redis goes through service/redis/ (connect, publish, ...), as everywhere outside it."""
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "redis" or n.startswith("redis.") for n in names), path.name


def test_benchmarks_are_not_installed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(REPO), include=find["include"], exclude=find.get("exclude", ()))
    assert "scripts" in packages and "service.redis" in packages
    assert not [p for p in packages if p.split(".")[0] in ("benchmarks", "tests")]


def test_api_env_drops_the_callers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECS_MODEL_DIR", "/somewhere")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/elsewhere")
    env = api_env({"REDIS_URL": "redis://h:1/0", "WORKERS": 2, **NO_RATE_LIMITS})
    assert "RECS_MODEL_DIR" not in env and "PROMETHEUS_MULTIPROC_DIR" not in env
    assert env["RECS_WORKERS"] == "2"
    assert env["RECS_EVENTS_RATE_LIMIT"] == env["RECS_RECOMMENDATIONS_RATE_LIMIT"] == "off"
    assert api_env({}, prometheus_dir=Path("/p"))["PROMETHEUS_MULTIPROC_DIR"] == "/p"


def test_redis_server_restarts_on_its_port_with_saved_data(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        port = server.port
        client = server.client()
        client.set("kept", b"1")
        server.stop(save=True)
        server.start()
        assert server.port == port and client.get("kept") == b"1"
        client.close()
    assert server.process is not None and server.process.poll() is not None


def test_processes_stop_their_children() -> None:
    procs = Processes()
    child = procs.start([sys.executable, "-c", "import time; time.sleep(60)"])
    procs.stop_all()
    assert child.poll() is not None


def test_free_port_and_percentile() -> None:
    assert 0 < free_port() < 65536
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([], 99) != percentile([], 99)  # NaN when there is nothing to rank
