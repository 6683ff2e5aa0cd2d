"""Exact top-k neighbours under the dot product of sparse rows."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from sparse_dot_topn import sp_matmul_topn

# Rows per block: bounds the working memory of one multiplication and paces the progress bar.
DEFAULT_BLOCK_ROWS = 4096


def default_threads() -> int:
    """Worker threads for the multiplication: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


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
    lower row index, also at the k-th place: a row whose cut-off falls inside a run of tied
    scores is recomputed in full, so the result never depends on the library's tie order.

    Returns
    -------
    ids : int32 array (n_rows, k), row indices, -1 where a row has fewer than k neighbours.
    scores : float64 array (n_rows, k), NaN where ``ids`` is -1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    # Stored zeros make sparse_dot_topn return uninitialised memory for some rows.
    matrix.eliminate_zeros()
    n_rows = matrix.shape[0]
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    scores = np.full((n_rows, k), np.nan, dtype=np.float64)
    if n_rows == 0:
        return ids, scores
    threads = default_threads() if n_threads is None else n_threads
    transposed = sp.csr_matrix(matrix.T)
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        block = sp_matmul_topn(
            matrix[start:stop],
            transposed,
            # k + 2: self is usually among the best, and one more candidate than needed tells
            # whether the k-th place is tied with something the library cut off.
            top_n=min(k + 2, n_rows),
            sort=False,
            n_threads=threads if threads > 1 else None,
        )
        _select(block, start, k, min_score, matrix, transposed, ids, scores)
        if progress is not None:
            progress(stop - start)
    return ids, scores


def _select(
    block: sp.csr_matrix,
    offset: int,
    k: int,
    min_score: float,
    matrix: sp.csr_matrix,
    transposed: sp.csr_matrix,
    ids: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Sort one block's candidates by (-score, index), drop self, keep k; fix tied cut-offs."""
    block = sp.csr_matrix(block)
    counts = np.diff(block.indptr)
    rows = np.repeat(np.arange(block.shape[0]), counts)
    cols = block.indices.astype(np.int64)
    data = block.data
    order = np.lexsort((cols, -data, rows))
    rows, cols, data = rows[order], cols[order], data[order]
    # The smallest score the library returned per full row: ties with it may have been cut.
    full = counts == min(k + 2, matrix.shape[0])
    row_min = np.full(block.shape[0], np.inf)
    nonempty = counts > 0
    row_min[nonempty] = data[block.indptr[1:][nonempty] - 1]

    keep = (cols != rows + offset) & (data > 0) & (data >= min_score)
    rows, cols, data = rows[keep], cols[keep], data[keep]
    starts = np.searchsorted(rows, np.arange(block.shape[0]))
    rank = np.arange(rows.size) - starts[rows]
    kept = rank < k
    ids[rows[kept] + offset, rank[kept]] = cols[kept]
    scores[rows[kept] + offset, rank[kept]] = data[kept]

    kth = scores[offset : offset + block.shape[0], k - 1]
    suspicious = np.flatnonzero(full & (row_min == kth))
    for local in suspicious:
        _exact_row(int(local) + offset, k, min_score, matrix, transposed, ids, scores)


def _exact_row(
    row: int,
    k: int,
    min_score: float,
    matrix: sp.csr_matrix,
    transposed: sp.csr_matrix,
    ids: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Full recomputation of one row, for a cut-off inside a run of tied scores."""
    product = sp.csr_matrix(matrix[row] @ transposed)
    cols = product.indices.astype(np.int64)
    data = product.data
    keep = (cols != row) & (data > 0) & (data >= min_score)
    cols, data = cols[keep], data[keep]
    order = np.lexsort((cols, -data))[:k]
    ids[row] = -1
    scores[row] = np.nan
    ids[row, : order.size] = cols[order]
    scores[row, : order.size] = data[order]
