"""The neighbour blocks on a Dask cluster: scatter the rows once, one task per block.

Imported only when a build asks for a cluster (``recs train --cluster/--workers``): the
in-process build never imports dask. Every block's answer is final (``models/blocks.py``), so
there is no merge step: each finished block is written into the result arrays as it arrives,
and the lists are the in-process build's, bit for bit, whatever the workers, the block size or
the order blocks finish in.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dask.config
import numpy as np
from distributed import Client, LocalCluster, Security, as_completed, get_worker
from distributed.client import FutureCancelledError
from distributed.comm import connect as comm_connect
from distributed.scheduler import KilledWorker

from models.blocks import (
    BlendedRows,
    NeighbourPlan,
    ProgressFactory,
    block_neighbours,
    block_ranges,
    empty_result,
    write_block,
)
from models.topk import default_threads

# Seconds to wait for a scheduler's first worker before giving up.
WORKER_TIMEOUT_S = 120.0
# Blocks per worker thread when no block size is given: enough that the last blocks to finish
# leave little idle time, few enough that per-task overhead (~ms) stays negligible.
BLOCKS_PER_THREAD = 16
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 256, 4096


class ClusterUnavailable(RuntimeError):
    """The scheduler cannot be reached, was lost, or the cluster cannot finish the build."""


class BadSchedulerAddress(ValueError):
    """A scheduler address dask cannot parse (no port, unknown scheme)."""


def _block_task(
    rows: BlendedRows, latent: np.ndarray | None, plan: NeighbourPlan, start: int, stop: int
) -> tuple[np.ndarray, ...]:
    """One block on a worker, with as many kernel threads as the worker has task threads.

    The worker runs up to ``nthreads`` tasks at once, but the kernel runs one at a time per
    process (models/topk.py's lock), so ``nthreads`` numba threads keep the worker's cores busy
    without oversubscribing them. The re-ranking runs outside that lock, in every task thread
    at once, so each task re-ranks in one thread.
    """
    threads = get_worker().state.nthreads
    return block_neighbours(rows, latent, plan, start, stop, n_threads=threads, rerank_threads=1)


def default_block_rows(n_rows: int, total_threads: int) -> int:
    """Rows per block: ~``BLOCKS_PER_THREAD`` blocks per worker thread, within bounds."""
    wanted = -(-n_rows // max(1, total_threads * BLOCKS_PER_THREAD))
    return max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, wanted))


@dataclass
class ClusterRunner:
    """Runs the blocks on the cluster ``client`` is connected to (a ``NeighbourRunner``)."""

    client: Client
    block_rows: int | None = None

    def __post_init__(self) -> None:
        self.address = str(self.client.scheduler_info().get("address", "?"))
        self._done = self._total = 0

    def __call__(
        self,
        rows: BlendedRows,
        latent: np.ndarray | None,
        plan: NeighbourPlan,
        progress: ProgressFactory | None,
    ) -> tuple[np.ndarray, ...]:
        try:
            return self._run(rows, latent, plan, progress)
        except ClusterUnavailable:
            raise
        except KilledWorker as exc:
            # Dask gives up when the task's workers died more than allowed-failures times.
            raise ClusterUnavailable(
                f"a block killed {exc.allowed_failures + 1} Dask workers in a row ({exc.task});"
                " no model written"
            ) from exc
        except FutureCancelledError as exc:
            if exc.reason != "scheduler-connection-lost" and self.client.status == "running":
                # The scheduler is alive but dropped the scattered matrix: every worker holding
                # a copy died (one worker, or all out of memory), and it cannot be recomputed.
                raise ClusterUnavailable(
                    f"the Dask cluster lost the matrix this build sent it: every worker holding"
                    f" a copy died ({self._done} of {self._total} blocks done:"
                    f" {_first_line(exc)}); no model written"
                ) from exc
            raise self._lost_scheduler(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise self._lost_scheduler(exc) from exc

    def _lost_scheduler(self, exc: BaseException) -> ClusterUnavailable:
        # CommClosedError is an OSError; futures are cancelled when the client loses the
        # scheduler. Either way the build cannot finish: nothing has been written.
        return ClusterUnavailable(
            f"lost the Dask scheduler {self.address} during the build"
            f" ({self._done} of {self._total} blocks done: {_first_line(exc)});"
            " no model written"
        )

    def _run(
        self,
        rows: BlendedRows,
        latent: np.ndarray | None,
        plan: NeighbourPlan,
        progress: ProgressFactory | None,
    ) -> tuple[np.ndarray, ...]:
        client = self.client
        try:
            client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
        except TimeoutError:
            raise ClusterUnavailable(
                f"the Dask scheduler {self.address} has no workers"
                f" (waited {WORKER_TIMEOUT_S:.0f} s); no model written"
            ) from None
        threads = sum(client.nthreads().values())
        block_rows = self.block_rows or default_block_rows(rows.n_rows, threads)
        ranges = block_ranges(rows.n_rows, block_rows)
        # Once to every worker (and to a restarted worker from a peer), not once per task.
        [rows_future] = client.scatter([rows], broadcast=True, hash=False)
        latent_future = None
        if latent is not None:
            [latent_future] = client.scatter([latent], broadcast=True, hash=False)
        build = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                _block_task,
                rows_future,
                latent_future,
                plan,
                start,
                stop,
                key=f"related-stories-block-{build}-{start}",
                pure=False,
            ): (start, stop)
            for start, stop in ranges
        }
        result = empty_result(rows.n_rows, plan)
        self._done, self._total = 0, len(ranges)
        bar = progress("blocks", len(ranges)) if progress else None
        try:
            for future in as_completed(futures, loop=client.loop):
                start, stop = futures.pop(future)
                write_block(result, start, future.result())
                future.release()
                self._done += 1
                if bar:
                    bar.update(1)
        finally:
            if bar:
                bar.close()
            for future in futures:
                future.cancel()
        rows_future.release()
        if latent_future is not None:
            latent_future.release()
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _probe(address: str) -> None:
    """Connect once and hang up: a Client that fails to connect leaves a client object whose
    clean-up raises again when it is collected, so reachability is checked first. Gives up
    after dask's ``distributed.comm.timeouts.connect`` (30 s unless configured, e.g.
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s``)."""
    # The client's TLS settings (dask config distributed.comm.tls.*), as Client(address) uses.
    comm = await comm_connect(address, **Security().get_connection_args("client"))
    await comm.close()


def check_port(address: str) -> None:
    """Refuse a port dask would reject only after its connect timeout (out of range) or in
    Python's words (``invalid literal for int()``); the rest of the address is dask's to judge."""
    _, _, location = address.rpartition("://")
    if location.endswith("]"):  # "[::1]": no port, which dask names
        return
    _, colon, port = location.rpartition(":")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise BadSchedulerAddress(f"{address!r}: the port {port!r} is not a number in 1-65535")


def local_threads_per_worker(workers: int) -> int:
    """Threads per local worker: this machine's cores shared out, at least one each."""
    return max(1, default_threads() // workers)


@contextmanager
def connect(address: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a local cluster of ``workers``
    processes started here and stopped on exit."""
    if (address is None) == (workers is None):
        raise ValueError("give a scheduler address or a number of local workers, not both")
    if address is not None:
        check_port(address)
        try:
            asyncio.run(_probe(address))
            client = Client(address, set_as_default=False)
        except ValueError as exc:
            raise BadSchedulerAddress(f"{address!r}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailable(
                f"cannot reach the Dask scheduler {address} ({_first_line(exc)}); nothing trained"
            ) from None
        with client:
            yield client
        return
    assert workers is not None
    with _environ_restored(dask.config.get("distributed.nanny.pre-spawn-environ", {})):
        yield from _local_client(workers)


@contextmanager
def _environ_restored(names: Iterable[str]) -> Iterator[None]:
    """Put ``names`` back in this process's environment on exit.

    dask's nanny passes its pre-spawn variables (OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1,
    ...) to the workers by setting them in the spawning process: here, the one running
    ``recs``, whose later BLAS pools and child processes would then run on one thread.
    """
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _local_client(workers: int) -> Iterator[Client]:
    threads = local_threads_per_worker(workers)
    try:
        cluster = _local_cluster(workers, threads)
    except (RuntimeError, OSError, TimeoutError) as exc:
        # A worker that cannot start (a bad dask preload, no memory for a process): dask's
        # own clean-up has stopped what did start.
        raise ClusterUnavailable(
            f"cannot start a local Dask cluster of {workers} worker(s) ({_first_line(exc)});"
            " nothing trained"
        ) from None
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


def _local_cluster(workers: int, threads: int) -> LocalCluster:
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        # Any free port: a fixed one clashes with another cluster on the machine.
        dashboard_address=":0",
        # The scattered rows cannot be spilled or recomputed, so a memory limit would only
        # get a worker killed mid-build; the machine's own limits apply instead.
        memory_limit=0,
        # numba's pool sized to the worker's threads; BLAS and OpenMP pools stay at one thread
        # per worker (dask's own default), so N workers never run more than the cores.
        env={"NUMBA_NUM_THREADS": str(threads)},
        silence_logs=40,
    )


def worker_pids(client: Client) -> dict[str, int]:
    """Worker address -> process id (tests kill one mid-build)."""
    return dict(client.run(os.getpid))


def _threading(dask_worker: Any) -> dict[str, object]:
    import numba

    return {
        "nthreads": dask_worker.state.nthreads,
        "numba_pool": numba.config.NUMBA_NUM_THREADS,  # type: ignore[attr-defined]
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "openblas": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def worker_threading(client: Client) -> dict[str, dict[str, object]]:
    """Worker address -> its task threads, numba pool size and BLAS/OpenMP thread settings."""
    return dict(client.run(_threading))
