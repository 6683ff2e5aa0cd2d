"""The neighbour blocks in process and on a Dask cluster: the same lists, bit for bit.

One local cluster of 2 worker processes is shared by the module (starting one costs seconds).
The scheduler-loss tests run their own scheduler and worker as child processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from models.blocks import BlendedRows, InProcess, NeighbourPlan, block_neighbours, block_ranges
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import Article, read_articles
from models.topk import default_threads
from scripts.cli import cli
from tests.paths import REPO, SAMPLE_ARTICLES

dask = pytest.importorskip("dask")
cluster = pytest.importorskip("models.cluster")

CONFIGS = {
    "rerank": ModelConfig(k=20),
    "plain": ModelConfig(k=15, rerank=False, min_score=0.05),
}


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return read_articles([SAMPLE_ARTICLES]).articles


@pytest.fixture(scope="module")
def reference(articles: list[Article]) -> dict[str, RelatedModel]:
    """The in-process build of each config."""
    return {name: RelatedModel(config=config).fit(articles) for name, config in CONFIGS.items()}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with cluster.connect(workers=2) as connected:
        yield connected


def assert_same_lists(model: RelatedModel, reference: RelatedModel) -> None:
    assert model.neighbours_.dtype == reference.neighbours_.dtype == np.int32
    assert model.scores_.dtype == reference.scores_.dtype == np.float32
    assert np.array_equal(model.neighbours_, reference.neighbours_)
    # Bit for bit, NaN padding included.
    assert model.scores_.tobytes() == reference.scores_.tobytes()


# ----------------------------------------------------------------------- blocks, no dask
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_any_cut_into_blocks_gives_the_same_rows(
    name: str, reference: dict[str, RelatedModel]
) -> None:
    model = reference[name]
    rows = BlendedRows(model.blended_matrix())
    cfg = model.cfg
    plan = NeighbourPlan(
        k=cfg.k,
        pool=max(cfg.k, cfg.rerank_pool) if model.rerank_active_ else cfg.k,
        pool_min_score=0.0 if model.rerank_active_ else cfg.min_score,
        rerank=model.rerank_active_,
        weight=cfg.rerank_weight,
        feedback=cfg.rerank_feedback,
        feedback_weight=cfg.rerank_feedback_weight,
        min_score=cfg.min_score,
    )
    # Uneven cuts, computed out of order: each block alone equals its rows of the full build.
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, rows.n_rows), size=12, replace=False))
    bounds = list(zip([0, *cuts], [*cuts, rows.n_rows], strict=True))
    for start, stop in reversed(bounds):
        ids, scores = block_neighbours(rows, model.latent_, plan, int(start), int(stop))
        assert np.array_equal(ids, model.neighbours_[start:stop])
        assert scores.tobytes() == model.scores_[start:stop].tobytes()
    ids, scores = InProcess(block_rows=333)(rows, model.latent_, plan, None)
    assert np.array_equal(ids, model.neighbours_)
    assert scores.tobytes() == model.scores_.tobytes()
    assert model.neighbours_[:, 0].min() >= 0  # a real build, not an empty one


def test_block_ranges_cover_every_row_once() -> None:
    assert block_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert block_ranges(0, 4) == []
    with pytest.raises(ValueError, match="block_rows must be >= 1"):
        block_ranges(10, 0)


def test_default_block_size_gives_each_thread_many_blocks() -> None:
    assert cluster.default_block_rows(1_000_000, 2) == 4096
    assert cluster.default_block_rows(50_000, 2) == 1563  # 32 blocks, 16 per thread
    assert cluster.default_block_rows(1_000, 2) == 256


# ----------------------------------------------------------------------- on the cluster
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("block_rows", [None, 97, 700])
def test_cluster_build_equals_in_process_build(
    name: str,
    block_rows: int | None,
    client: Any,
    articles: list[Article],
    reference: dict[str, RelatedModel],
) -> None:
    runner = cluster.ClusterRunner(client, block_rows)
    model = RelatedModel(config=CONFIGS[name]).fit(articles, runner=runner)
    assert_same_lists(model, reference[name])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cluster_build_keeps_the_same_pools(
    name: str, client: Any, articles: list[Article], reference: dict[str, RelatedModel]
) -> None:
    runner = cluster.ClusterRunner(client, 97)
    model = RelatedModel(config=CONFIGS[name]).fit(articles, runner=runner, keep_pools=True)
    kept = RelatedModel(config=CONFIGS[name]).fit(articles, keep_pools=True)
    assert_same_lists(model, reference[name])
    assert np.array_equal(model.pools_[0], kept.pools_[0])
    assert model.pools_[1].tobytes() == kept.pools_[1].tobytes()
    assert model.pools_[0].shape[1] > CONFIGS[name].k


def test_worker_threads_follow_nthreads(client: Any) -> None:
    """Each worker's kernel threads are its task threads, its numba pool is no larger, and its
    BLAS/OpenMP pools have one thread: 2 workers never run more threads than the cores."""
    expected = cluster.local_threads_per_worker(2)
    found = cluster.worker_threading(client)
    assert len(found) == 2
    for settings in found.values():
        assert settings == {
            "nthreads": expected,
            "numba_pool": expected,
            "omp": "1",
            "openblas": "1",
        }


class KillAfter:
    """A progress bar that kills one worker process once ``after`` blocks are in."""

    def __init__(self, pid: int, after: int) -> None:
        self.pid, self.after, self.done = pid, after, 0

    def update(self, n: int) -> None:
        self.done += n
        if self.done == self.after:
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        pass


def test_a_worker_killed_mid_build_changes_nothing(
    client: Any, articles: list[Article], reference: dict[str, RelatedModel]
) -> None:
    before = cluster.worker_pids(client)
    victim = sorted(before.values())[0]
    bars: list[KillAfter] = []

    def progress(description: str, total: int) -> KillAfter:
        assert description == "blocks" and total == -(-len(articles) // 32)
        bars.append(KillAfter(victim, after=3))
        return bars[-1]

    runner = cluster.ClusterRunner(client, block_rows=32)
    model = RelatedModel(config=CONFIGS["rerank"]).fit(articles, runner=runner, progress=progress)
    assert bars and bars[0].done == -(-len(articles) // 32)
    assert_same_lists(model, reference["rerank"])
    # The nanny restarted the killed worker: two workers again, one of them new.
    client.wait_for_workers(2, timeout=60)
    after = cluster.worker_pids(client)
    assert victim not in after.values() and len(after) == 2


# ----------------------------------------------------------------------- the command line
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def lone_scheduler() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A scheduler and one worker as child processes (so the test can kill the scheduler)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    run = [sys.executable, "-m"]
    scheduler = subprocess.Popen(
        [*run, "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
        + ["--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [*run, "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), 1):
                    break
            except OSError:
                time.sleep(0.2)
        yield address, scheduler
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait(timeout=30)


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--articles", str(SAMPLE_ARTICLES), "--out", str(out), "--k", "10", *extra]


def test_a_lost_scheduler_fails_with_exit_4_and_writes_nothing(
    lone_scheduler: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, scheduler = lone_scheduler

    class KillScheduler:
        def update(self, n: int) -> None:
            scheduler.kill()

        def close(self) -> None:
            pass

    def progress(description: str, total: int) -> Any:
        from scripts.common import progress_bar

        return KillScheduler() if description == "blocks" else progress_bar(description, total)

    # The bar is the one place that sees a block finish: the scheduler dies after the first.
    monkeypatch.setattr("scripts.training.progress_bar", progress)
    out = tmp_path / "models" / "new"
    result = CliRunner().invoke(cli, train_args(out, "--cluster", address, "--block-rows", "16"))
    assert result.exit_code == 4, result.output
    assert f"error: lost the Dask scheduler {address} during the build (" in result.output
    assert re.search(r"\(\d+ of 93 blocks done", result.output), result.output
    assert "no model written" in result.output
    assert not out.exists()
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def test_an_unreachable_scheduler_fails_fast_with_exit_4(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "model"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        started = time.monotonic()
        result = CliRunner().invoke(cli, train_args(out, "--cluster", address))
    assert result.exit_code == 4, result.output
    assert result.output.startswith(f"error: cannot reach the Dask scheduler {address} (")
    assert result.output.rstrip().endswith("nothing trained")
    assert time.monotonic() - started < 20
    assert not out.exists()


def test_retrain_with_an_unreachable_scheduler_leaves_the_live_version(
    redis_url: str, tmp_path: Path
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    root = tmp_path / "root"
    args = ["retrain", "--articles", str(SAMPLE_ARTICLES), "--model-root", str(root)]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = CliRunner().invoke(cli, [*args, "--redis-url", redis_url, "--cluster", address])
    assert result.exit_code == 4, result.output
    assert result.output.startswith("retrain FAILED: cannot reach the Dask scheduler")
    assert result.output.rstrip().endswith("nothing published")
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--cluster", "tcp://127.0.0.1:8786", "--workers", "2"],
            "give --cluster (or RECS_DASK_SCHEDULER) or --workers, not both",
        ),
        (["--cluster", "no-port-here"], "--cluster: 'no-port-here': missing port number"),
        (["--workers", "0"], "Invalid value for '--workers'"),
    ],
)
def test_bad_cluster_options_exit_2(extra: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, train_args(tmp_path / "model", *extra))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "model").exists()


@pytest.mark.skipif(default_threads() < 2, reason="--workers 2 needs 2 cores")
def test_train_with_local_workers_writes_the_in_process_model(tmp_path: Path) -> None:
    local = CliRunner().invoke(cli, train_args(tmp_path / "local", "--json"))
    workers = CliRunner().invoke(cli, train_args(tmp_path / "cluster", "--workers", "2", "--json"))
    assert local.exit_code == 0 and workers.exit_code == 0, workers.output
    # Same content, same version digest (the version id is the build time + a content hash).
    versions = [json.loads(r.output)["version"].split("-")[1] for r in (local, workers)]
    assert versions[0] == versions[1]
    arrays = [(tmp_path / name / "arrays.npz").read_bytes() for name in ("local", "cluster")]
    assert arrays[0] == arrays[1]


# ----------------------------------------------------------------------- imports
CHILD = """
import json, sys
from scripts.cli import cli
missing = sys.argv[2] == "hide-dask"
if missing:  # as if dask were not installed
    sys.modules["dask"] = sys.modules["distributed"] = None
try:
    cli(json.loads(sys.argv[1]), prog_name="recs")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "dask": [m for m in ("dask", "distributed")
                                        if sys.modules.get(m) is not None]}))
"""


def run_child(args: list[str], mode: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k != "RECS_DASK_SCHEDULER"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args), mode],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report, done.stderr


def test_the_in_process_build_never_imports_dask(tmp_path: Path) -> None:
    report, stderr = run_child(train_args(tmp_path / "model"), "as-is")
    assert report == {"code": 0, "dask": []}, stderr
    assert (tmp_path / "model" / "manifest.json").exists()


def test_asking_for_a_cluster_without_dask_says_how_to_install_it(tmp_path: Path) -> None:
    report, stderr = run_child(train_args(tmp_path / "model", "--workers", "1"), "hide-dask")
    assert report["code"] == 2
    assert "pip install 'related-stories[dask]'" in stderr
    assert not (tmp_path / "model").exists()


# ----------------------------------------------------------------------- docker compose
def test_compose_scale_profile_runs_the_trainer_on_a_scheduler_and_two_workers() -> None:
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    scale = {name for name, service in services.items() if "scale" in service.get("profiles", [])}
    assert scale == {"scheduler", "dask-worker", "trainer-scale"}
    image = services["api"]["image"]
    assert {services[name]["image"] for name in scale} == {image}
    scheduler = services["scheduler"]
    assert scheduler["command"][:2] == ["dask", "scheduler"]
    port = scheduler["command"][scheduler["command"].index("--port") + 1]
    assert port in " ".join(scheduler["healthcheck"]["test"])
    worker = services["dask-worker"]
    assert worker["command"][:3] == ["dask", "worker", f"tcp://scheduler:{port}"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["depends_on"]["scheduler"]["condition"] == "service_healthy"
    trainer = services["trainer-scale"]
    args = trainer["command"]
    assert args[:2] == ["recs", "train"]
    assert args[args.index("--cluster") + 1] == f"tcp://scheduler:{port}"
    # Same arguments as the in-process trainer otherwise: the same model, computed elsewhere.
    plain = services["trainer"]["command"]
    assert [a for a in args if a not in ("--cluster", f"tcp://scheduler:{port}")] == plain
    assert trainer["depends_on"]["scheduler"]["condition"] == "service_healthy"
    assert trainer["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    # The image has the [dask] extra, or the scheduler and workers could not start.
    assert "pip install '.[dask]'" in (REPO / "Dockerfile").read_text()


def test_compose_scale_trainer_arguments_parse() -> None:
    """The compose trainer's arguments are valid ``recs train`` options (up to the cluster)."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    args = services["trainer-scale"]["command"][1:]
    context = cli.make_context("recs", [*args], resilient_parsing=True)
    train_command = cli.get_command(context, args[0])
    assert train_command is not None
    parsed = train_command.make_context("train", args[1:], resilient_parsing=True).params
    assert parsed["cluster_address"] == "tcp://scheduler:8786"
    assert parsed["publish_url"] == "redis://redis:6379/0"
