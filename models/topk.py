"""Exact top-k neighbours under the dot product of sparse rows."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Rows per kernel call: paces the progress bar (each call is split across the threads).
DEFAULT_BLOCK_ROWS = 4096
# One kernel run at a time per process: it already uses every core, and numba's portable
# "workqueue" threading layer (used where no OpenMP runtime is found) aborts the process when
# two threads launch parallel kernels at once.
_KERNEL_LOCK = threading.Lock()


def default_threads() -> int:
    """Worker threads for the multiplication: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class PreparedRows:
    """A matrix made ready for the kernel: canonical CSR arrays and its column-tiled postings.

    Built once per process (the cluster build: once per worker), then any block of rows is a
    pure function of it: a row's neighbours never depend on which other rows share its call.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    starts: np.ndarray
    local: np.ndarray
    weights: np.ndarray
    tile: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1


def canonical(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` as float64 CSR with duplicates summed and stored zeros dropped."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    if not matrix.has_canonical_format or (matrix.data == 0).any():
        # Duplicates summed (else a pair's score would depend on how it was stored, and (i, j)
        # and (j, i) could differ in the last bit) and stored zeros dropped (dead postings).
        matrix = matrix.copy()
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
    return matrix


def prepare_rows(matrix: sp.csr_matrix) -> PreparedRows:
    """The kernel's view of ``matrix`` (see :class:`PreparedRows`)."""
    # Lazy: numba costs ~1 s to import, and only batch training runs this.
    from models import topk_kernel

    matrix = canonical(matrix)
    tile = topk_kernel.TILE_COLUMNS
    starts, local, weights = topk_kernel.tile_postings(matrix, tile)
    return PreparedRows(
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices.astype(np.int32),
        data=np.ascontiguousarray(matrix.data, dtype=np.float64),
        starts=starts,
        local=local,
        weights=weights,
        tile=tile,
    )


def top_k_rows(
    prepared: PreparedRows,
    k: int,
    start: int,
    stop: int,
    *,
    min_score: float = 0.0,
    n_threads: int | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of rows ``[start, stop)`` against every row, as :func:`top_k` gives them.

    ``out``: (ids, scores) arrays of shape (stop - start, k) to write into (default: new ones).
    """
    from models import topk_kernel

    if not 0 <= start <= stop <= prepared.n_rows:
        raise ValueError(f"rows [{start}, {stop}) are not within the {prepared.n_rows} rows")
    if out is None:
        ids = np.full((stop - start, k), -1, dtype=np.int32)
        scores = np.full((stop - start, k), np.nan, dtype=np.float64)
    else:
        ids, scores = out
    if stop == start:
        return ids, scores
    with _KERNEL_LOCK:
        topk_kernel.set_threads(default_threads() if n_threads is None else n_threads)
        topk_kernel.rows_top_k(
            prepared.indptr,
            prepared.indices,
            prepared.data,
            prepared.starts,
            prepared.local,
            prepared.weights,
            prepared.tile,
            start,
            stop,
            float(min_score),
            scores,
            ids,
            topk_kernel.SPARSE_SCAN_POSTINGS,
        )
    return ids, scores


def top_k(
    matrix: sp.csr_matrix,
    k: int,
    *,
    min_score: float = 0.0,
    n_threads: int | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` most similar rows of every row (self excluded).

    Similarity is the dot product of rows, so for L2-normalised rows it is the cosine. Only
    neighbours with a score above 0 and at least ``min_score`` are kept. Ties are broken by the
    lower row index, also at the k-th place. Every score is the float64 dot product, summed
    in column order, so the (i, j) and (j, i) scores are the same number.

    Returns
    -------
    ids : int32 array (n_rows, k), row indices, -1 where a row has fewer than k neighbours.
    scores : float64 array (n_rows, k), NaN where ``ids`` is -1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    n_rows = matrix.shape[0]
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    scores = np.full((n_rows, k), np.nan, dtype=np.float64)
    if n_rows == 0:
        return ids, scores
    prepared = prepare_rows(matrix)
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        # Row slices of C-ordered arrays are views: the kernel writes straight into the result.
        top_k_rows(
            prepared,
            k,
            start,
            stop,
            min_score=min_score,
            n_threads=n_threads,
            out=(ids[start:stop], scores[start:stop]),
        )
        if progress is not None:
            progress(stop - start)
    return ids, scores
