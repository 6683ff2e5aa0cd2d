"""Compiled kernel of the exact top-k: a column-tiled sparse product with per-row heaps.

Why not sparse_dot_topn alone: the blended product of a news archive is nearly dense (87% of
all pairs share a word at 200k Reuters-like articles), so most of that library's time goes to
scattering into a 200k-wide accumulator and handing every touched column to its selection.
Here the columns are cut into tiles of ``TILE_COLUMNS`` rows whose accumulator stays in the
L1 cache, and a column only reaches the heap when it beats the row's current k-th score.
Measured 2.2x faster than sparse_dot_topn on the same rows (docs/benchmarks.md).

Imported lazily by ``models.topk``: numba's import and the cached compile cost ~1 s, which
only batch training needs, not the API.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange


def _private_cache_dir() -> str:
    """A cache directory only this user can write: numba loads (unpickles) what it finds there."""
    path = Path(tempfile.gettempdir()) / f"related-stories-numba-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise PermissionError(f"{path} is not this user's own private directory")
        return str(path)
    except OSError:
        return tempfile.mkdtemp(prefix="related-stories-numba-")


def _writable(directory: Path) -> bool:
    return os.access(directory if directory.exists() else directory.parent, os.W_OK)


# numba caches the compiled kernel in __pycache__ beside this file; an installed package is
# often read-only (the Docker image runs as an unprivileged user whose HOME is read-only too),
# and numba then refuses to define a cached function at all. A per-user directory keeps the
# ~7 s compile to once per machine boot.
if not numba.config.CACHE_DIR and not _writable(Path(__file__).parent / "__pycache__"):  # type: ignore[attr-defined]
    numba.config.CACHE_DIR = _private_cache_dir()  # type: ignore[attr-defined]

# Columns per tile: 8,192 float64 accumulators (64 KB) sit in L1/L2. 4,096-16,384 measured
# within 10% of each other on Reuters; 8,192 was the fastest.
TILE_COLUMNS = 8192
# Rows a thread takes at a time: they share the tile's postings while those are in cache.
ROWS_PER_TASK = 32
# Postings in a tile up to which a row's touched columns are sorted and visited rather than the
# whole tile scanned: sorting m columns beats scanning 8,192 slots up to m ~ 256.
SPARSE_SCAN_POSTINGS = 256


def tile_postings(
    matrix: sp.csr_matrix, tile_columns: int = TILE_COLUMNS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The transposed matrix (term -> rows) with each term's postings split by column tile.

    Returns ``(starts, local, data)``: the postings of term ``t`` in tile ``j`` are
    ``local[starts[t, j]:starts[t, j + 1]]`` (row numbers minus ``j * tile_columns``, ascending)
    with weights ``data[...]``.
    """
    n_rows, n_terms = matrix.shape
    transposed = sp.csr_matrix(matrix.T)
    transposed.sort_indices()
    n_tiles = max(1, -(-n_rows // tile_columns))
    counts = np.diff(transposed.indptr)
    term = np.repeat(np.arange(n_terms, dtype=np.int64), counts)
    tile = transposed.indices.astype(np.int64) // tile_columns
    per_tile = np.bincount(term * n_tiles + tile, minlength=n_terms * n_tiles)
    starts = np.empty((n_terms, n_tiles + 1), dtype=np.int64)
    starts[:, 0] = transposed.indptr[:-1]
    starts[:, 1:] = transposed.indptr[:-1, None] + np.cumsum(
        per_tile.reshape(n_terms, n_tiles), axis=1
    )
    # uint16 when a tile fits it: the postings stream is the kernel's bottleneck, and 10 bytes
    # a posting instead of 12 measured ~15% faster at 200k.
    local_type = np.uint16 if tile_columns <= 1 << 16 else np.int32
    local = (transposed.indices % tile_columns).astype(local_type)
    return starts, local, np.ascontiguousarray(transposed.data, dtype=np.float64)


def set_threads(n_threads: int) -> int:
    """Use ``n_threads`` for the kernel (capped at numba's pool); returns the count in use."""
    pool: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    threads = max(1, min(n_threads, pool))
    numba.set_num_threads(threads)
    return threads


@njit(cache=True, inline="always")
def _worse(score_a: float, id_a: int, score_b: float, id_b: int) -> bool:
    """Whether (score_a, id_a) ranks below (score_b, id_b): score descending, then lower id."""
    return score_a < score_b or (score_a == score_b and id_a > id_b)


@njit(cache=True, inline="always")
def _sift_down(scores: np.ndarray, ids: np.ndarray, size: int, pos: int) -> None:
    """Restore the heap (root = the worst kept neighbour) below ``pos``."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        right = child + 1
        if right < size and _worse(scores[right], ids[right], scores[child], ids[child]):
            child = right
        if not _worse(scores[child], ids[child], scores[pos], ids[pos]):
            return
        scores[pos], scores[child] = scores[child], scores[pos]
        ids[pos], ids[child] = ids[child], ids[pos]
        pos = child


@njit(cache=True, inline="always")
def _push(scores: np.ndarray, ids: np.ndarray, size: int, score: float, col: int) -> int:
    """Offer a neighbour to a heap of capacity ``len(scores)``; returns the new size."""
    if size < scores.shape[0]:
        pos = size
        scores[pos] = score
        ids[pos] = col
        while pos > 0:
            parent = (pos - 1) // 2
            if not _worse(scores[pos], ids[pos], scores[parent], ids[parent]):
                break
            scores[pos], scores[parent] = scores[parent], scores[pos]
            ids[pos], ids[parent] = ids[parent], ids[pos]
            pos = parent
        return size + 1
    if _worse(score, col, scores[0], ids[0]):
        return size
    scores[0] = score
    ids[0] = col
    _sift_down(scores, ids, size, 0)
    return size


@njit(cache=True, inline="always")
def _sort_heap(scores: np.ndarray, ids: np.ndarray, size: int) -> None:
    """Heap sort in place: the worst goes to the end each time, so the result is best first."""
    for end in range(size - 1, 0, -1):
        scores[0], scores[end] = scores[end], scores[0]
        ids[0], ids[end] = ids[end], ids[0]
        _sift_down(scores, ids, end, 0)


@njit(cache=True, inline="always")
def _offer(
    heap_scores: np.ndarray,
    heap_ids: np.ndarray,
    size: int,
    bar: float,
    score: float,
    col: int,
    row: int,
) -> tuple[int, float]:
    """Give one column to a row's heap if it qualifies; returns the new (size, bar)."""
    k = heap_scores.shape[0]
    if score > 0.0 and score >= bar and (size < k or score > bar) and col != row:
        size = _push(heap_scores, heap_ids, size, score, col)
        if size == k and heap_scores[0] > bar:
            bar = heap_scores[0]
    return size, bar


@njit(parallel=True, cache=True)
def rows_top_k(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    local: np.ndarray,
    weights: np.ndarray,
    tile_columns: int,
    first_row: int,
    stop_row: int,
    min_score: float,
    out_scores: np.ndarray,
    out_ids: np.ndarray,
    sparse_limit: int,
) -> None:
    """Exact top-k of rows ``[first_row, stop_row)`` against every row, written to the outputs.

    ``out_scores``/``out_ids`` are (stop_row - first_row, k), one line per row of the block (a
    block computed on a cluster worker needs no n-row output): row ``i`` gets line
    ``i - first_row``, its neighbours best first (score
    descending, lower row on ties), self excluded, only scores > 0 and >= ``min_score``; the
    rest of the row is NaN / -1. Columns reach a row in ascending order, so a column that only
    ties the current k-th score would rank below it and is never let in: ties resolve to the
    lower row without a second pass. A row with at most ``sparse_limit`` postings in a tile has
    its touched columns sorted and visited instead of the whole tile scanned (sparse rows, e.g.
    a tags-only model, would otherwise cost n^2 whatever the sparsity).
    """
    k = out_scores.shape[1]
    n_tiles = starts.shape[1] - 1
    n_tasks = (stop_row - first_row + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        row0 = first_row + task * ROWS_PER_TASK
        row1 = min(row0 + ROWS_PER_TASK, stop_row)
        acc = np.zeros(tile_columns, dtype=np.float64)
        touched = np.empty(sparse_limit + 1, dtype=np.int64)
        sizes = np.zeros(row1 - row0, dtype=np.int64)
        for tile in range(n_tiles):
            col0 = tile * tile_columns
            for row in range(row0, row1):
                heap_scores = out_scores[row - first_row]
                heap_ids = out_ids[row - first_row]
                size = sizes[row - row0]
                postings = 0
                for p in range(indptr[row], indptr[row + 1]):
                    term = indices[p]
                    value = data[p]
                    first, stop = starts[term, tile], starts[term, tile + 1]
                    postings += stop - first
                    for q in range(first, stop):
                        acc[local[q]] += value * weights[q]
                if postings == 0:
                    continue
                bar = min_score
                if size == k and heap_scores[0] > bar:
                    bar = heap_scores[0]
                if postings <= sparse_limit:
                    m = 0
                    for p in range(indptr[row], indptr[row + 1]):
                        term = indices[p]
                        for q in range(starts[term, tile], starts[term, tile + 1]):
                            touched[m] = local[q]
                            m += 1
                    cols = touched[:m]
                    cols.sort()
                    for j in cols:
                        score = acc[j]
                        if score != 0.0:  # a column listed twice is zero the second time
                            acc[j] = 0.0
                            size, bar = _offer(
                                heap_scores, heap_ids, size, bar, score, col0 + j, row
                            )
                else:
                    for j in range(tile_columns):
                        score = acc[j]
                        if score != 0.0:
                            acc[j] = 0.0
                            size, bar = _offer(
                                heap_scores, heap_ids, size, bar, score, col0 + j, row
                            )
                sizes[row - row0] = size
        for row in range(row0, row1):
            size = sizes[row - row0]
            line = row - first_row
            _sort_heap(out_scores[line], out_ids[line], size)
            for r in range(size, k):
                out_scores[line, r] = np.nan
                out_ids[line, r] = -1
