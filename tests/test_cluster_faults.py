"""The cluster build's failures and bad options: exit codes and messages that say what broke.

Split from tests/test_cluster.py (module size); these tests start their own one-worker cluster
where they need one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from models.blocks import BlendedRows, NeighbourPlan
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from models.topk import default_threads
from scripts.cli import cli
from tests.paths import SAMPLE_ARTICLES
from tests.test_cluster import KillAfter, train_args

pytest.importorskip("dask")
cluster = pytest.importorskip("models.cluster")


def test_the_only_worker_killed_mid_build_fails_naming_the_lost_matrix() -> None:
    """A worker restart keeps the lists only while a peer holds the scattered matrix; with
    none left the build fails (exit 4 on the command line), and says why: the scheduler is
    fine."""
    articles = read_articles([SAMPLE_ARTICLES]).articles
    with cluster.connect(workers=1) as lone:
        [victim] = cluster.worker_pids(lone).values()
        runner = cluster.ClusterRunner(lone, block_rows=32)
        with pytest.raises(cluster.ClusterUnavailable) as failed:
            RelatedModel(config=ModelConfig(k=10, rerank=False)).fit(
                articles, runner=runner, progress=lambda _d, _t: KillAfter(victim, after=3)
            )

        class Poisoned(cluster.ClusterRunner):
            """The scheduler's verdict on a block whose every attempt killed its worker."""

            def _run(self, *args: Any) -> Any:
                from distributed.scheduler import KilledWorker

                last = type("Worker", (), {"address": "tcp://127.0.0.1:1"})()
                raise KilledWorker("related-stories-block-x-0", last, 3)

        plan = NeighbourPlan(k=1, pool=1, pool_min_score=0.0, rerank=False)
        with pytest.raises(cluster.ClusterUnavailable) as poisoned:
            Poisoned(lone)(BlendedRows(sp.identity(2, format="csr")), None, plan, None)
    message = str(failed.value)
    assert message.startswith("the Dask cluster lost the matrix this build sent it"), message
    assert "lost the Dask scheduler" not in message
    assert message.endswith("no model written")
    # allowed-failures=3 means the 4th death gives up: 4 workers died, not 3.
    assert str(poisoned.value).startswith("a block killed 4 Dask workers in a row (")


def test_more_local_workers_than_cores_exit_2(tmp_path: Path) -> None:
    cores = default_threads()
    result = CliRunner().invoke(cli, train_args(tmp_path / "model", "--workers", str(cores + 1)))
    assert result.exit_code == 2, result.output
    assert f"error: --workers: {cores + 1} worker processes on {cores} usable core" in result.output
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1:notaport", "host:"],
)
def test_a_port_that_is_no_port_exits_2_at_once(address: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, train_args(tmp_path / "model", "--cluster", address))
    assert result.exit_code == 2, result.output
    assert f"error: --cluster: {address!r}: the port " in result.output
    assert "is not a number in 1-65535" in result.output
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cluster", "no-port-here"], "--cluster: 'no-port-here': missing port number"),
        (["--cluster", "tcp://127.0.0.1:notaport"], "--cluster: 'tcp://127.0.0.1:notaport'"),
    ],
)
def test_retrain_with_a_bad_cluster_option_exits_2_not_refused(
    extra: list[str], message: str, redis_url: str, tmp_path: Path
) -> None:
    """A bad --cluster is the caller's option, not an unusable export (exit 3)."""
    root = tmp_path / "root"
    args = ["retrain", "--articles", str(SAMPLE_ARTICLES), "--model-root", str(root)]
    result = CliRunner().invoke(cli, [*args, "--redis-url", redis_url, *extra])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"retrain FAILED: {message}"), result.output
    assert result.output.rstrip().endswith("nothing published")
    assert list(root.iterdir()) == []


def test_a_local_cluster_that_cannot_start_exits_4_and_leaves_no_process(tmp_path: Path) -> None:
    import dask
    import psutil

    before = {child.pid for child in psutil.Process().children(recursive=True)}
    # Every worker fails to start: its preload module does not exist.
    with dask.config.set({"distributed.worker.preload": ["no_such_module_for_this_test"]}):
        result = CliRunner().invoke(cli, train_args(tmp_path / "model", "--workers", "1"))
    assert result.exit_code == 4, result.output
    assert result.output.startswith("error: cannot start a local Dask cluster of 1 worker(s) (")
    assert result.output.rstrip().endswith("nothing trained")
    assert not (tmp_path / "model").exists()
    left = [c for c in psutil.Process().children(recursive=True) if c.pid not in before]
    alive = [c for c in left if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    # multiprocessing's resource tracker lives as long as this process, by design.
    workers = [c.cmdline() for c in alive if "resource_tracker" not in " ".join(c.cmdline())]
    assert workers == []


def test_a_local_cluster_gives_back_this_process_thread_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dask's nanny sets OMP_NUM_THREADS=1 & co. here to pass them on to its workers."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    with cluster.connect(workers=1) as lone:
        settings = cluster.worker_threading(lone)
    # The workers got one BLAS/OpenMP thread; this process keeps its defaults.
    assert [(s["omp"], s["openblas"]) for s in settings.values()] == [("1", "1")]
    assert [name for name in names if name in os.environ] == []
