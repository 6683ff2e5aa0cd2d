"""The neighbours of one block of rows: exact top-k pool, then the latent re-ranking.

A block's answer is a pure function of (blended rows, latent vectors, plan, row range): no row's
list depends on the other rows in its block, so the rows can be cut into blocks any way and
computed anywhere (this process, or the workers of a Dask cluster, ``models/cluster.py``) with
the same bits. No dask here: the in-process build imports only this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from models.rerank import rerank
from models.topk import (
    DEFAULT_BLOCK_ROWS,
    PreparedRows,
    canonical,
    default_threads,
    prepare_rows,
    top_k_rows,
)


class Progress(Protocol):
    def update(self, n: int) -> Any: ...
    def close(self) -> Any: ...


# (description, total) -> a bar; scripts/common.py's tqdm bar is one.
ProgressFactory = Callable[[str, int], Progress]


@dataclass(frozen=True)
class NeighbourPlan:
    """What a block computes: the pool and, when ``rerank``, how the pool is re-ranked."""

    k: int
    pool: int
    pool_min_score: float
    rerank: bool
    weight: float = 0.0
    feedback: int = 0
    feedback_weight: float = 0.0
    min_score: float = 0.0
    # Exact candidates kept past the pool, returned with the lists (``keep_pools``): the
    # incremental index's pools, so a ``recs worker`` starts without recomputing them.
    spare: int = 0
    keep_pools: bool = False

    @property
    def width(self) -> int:
        """Candidates ranked per row: the pool, plus the spare when the pools are kept."""
        return self.pool + self.spare if self.keep_pools else self.pool


class BlendedRows:
    """The blended, normalised matrix as blocks read it.

    The kernel's column-tiled postings are built on first use and kept with the object, once
    per process; pickling sends only the matrix (a worker builds its own postings, which are
    about as large as the matrix, instead of receiving them).
    """

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.matrix = canonical(matrix)
        self._prepared: PreparedRows | None = None
        self._lock = threading.Lock()

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])

    def prepared(self) -> PreparedRows:
        # Several tasks of one worker may ask at once; one builds, the others wait for it.
        with self._lock:
            if self._prepared is None:
                self._prepared = prepare_rows(self.matrix)
            return self._prepared

    def __getstate__(self) -> dict[str, Any]:
        return {"matrix": self.matrix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.matrix = state["matrix"]
        self._prepared = None
        self._lock = threading.Lock()


def block_neighbours(
    rows: BlendedRows,
    latent: np.ndarray | None,
    plan: NeighbourPlan,
    start: int,
    stop: int,
    *,
    n_threads: int | None = None,
    rerank_threads: int | None = None,
) -> tuple[np.ndarray, ...]:
    """Neighbours of rows ``[start, stop)``: int32 ids (-1 padded), float32 scores (NaN padded),
    then, when ``plan.keep_pools``, the exact candidates: int32 ids, float64 scores
    (``plan.width`` wide).

    ``latent``: unit latent vectors of every row when ``plan.rerank``, else ignored.
    ``n_threads``: the kernel's threads (default: every core this process may use);
    ``rerank_threads``: the re-ranking's (default: the kernel's).
    """
    # Ties go to the lower row, a total order: the first ``pool`` of a wider top-n are the
    # top-``pool`` exactly, so keeping the spare never changes a list.
    cand_ids, cand_scores = top_k_rows(
        rows.prepared(),
        plan.width,
        start,
        stop,
        min_score=plan.pool_min_score,
        n_threads=n_threads,
    )
    kept = (cand_ids, cand_scores) if plan.keep_pools else ()
    if not plan.rerank:
        k = plan.k
        return cand_ids[:, :k].copy(), cand_scores[:, :k].astype(np.float32), *kept
    if latent is None:
        raise ValueError("a re-ranking plan needs the latent vectors")
    pool_ids = np.ascontiguousarray(cand_ids[:, : plan.pool])
    pool_scores = np.ascontiguousarray(cand_scores[:, : plan.pool])
    lists = rerank(
        pool_ids,
        pool_scores,
        latent,
        k=plan.k,
        weight=plan.weight,
        feedback=plan.feedback,
        feedback_weight=plan.feedback_weight,
        min_score=plan.min_score,
        rows=np.arange(start, stop),
        threads=rerank_threads or n_threads or default_threads(),
    )
    return (*lists, *kept)


def block_ranges(n_rows: int, block_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of consecutive blocks of at most ``block_rows`` rows."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    return [(start, min(start + block_rows, n_rows)) for start in range(0, n_rows, block_rows)]


def empty_result(n_rows: int, plan: NeighbourPlan) -> tuple[np.ndarray, ...]:
    """Result arrays that blocks are written into (-1 ids, NaN scores), as
    :func:`block_neighbours` returns them: the lists, then the kept pools."""
    k = plan.k
    lists = np.full((n_rows, k), -1, dtype=np.int32), np.full((n_rows, k), np.nan, np.float32)
    if not plan.keep_pools:
        return lists
    width = plan.width
    return *lists, np.full((n_rows, width), -1, np.int32), np.full((n_rows, width), np.nan)


def write_block(result: tuple[np.ndarray, ...], start: int, block: tuple[np.ndarray, ...]) -> None:
    """Copy one block's arrays into the result, at row ``start``."""
    for target, part in zip(result, block, strict=True):
        target[start : start + part.shape[0]] = part


class NeighbourRunner(Protocol):
    """Computes every block and assembles the (n, k) result (in process, or on a cluster)."""

    def __call__(
        self,
        rows: BlendedRows,
        latent: np.ndarray | None,
        plan: NeighbourPlan,
        progress: ProgressFactory | None,
    ) -> tuple[np.ndarray, ...]: ...


@dataclass(frozen=True)
class InProcess:
    """Every block in this process, in order, on every core (numba threads)."""

    block_rows: int = DEFAULT_BLOCK_ROWS

    def __call__(
        self,
        rows: BlendedRows,
        latent: np.ndarray | None,
        plan: NeighbourPlan,
        progress: ProgressFactory | None,
    ) -> tuple[np.ndarray, ...]:
        result = empty_result(rows.n_rows, plan)
        bar = progress("neighbours", rows.n_rows) if progress else None
        try:
            for start, stop in block_ranges(rows.n_rows, self.block_rows):
                write_block(result, start, block_neighbours(rows, latent, plan, start, stop))
                if bar:
                    bar.update(stop - start)
        finally:
            if bar:
                bar.close()
        return result
