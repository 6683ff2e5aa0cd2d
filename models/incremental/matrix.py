"""The growable matrix of an incremental index: a frozen CSR base plus appended delta rows.

Products against every row are what an upsert and a pool refill cost, so the base keeps its
transpose (the library top-n multiplies by it) and new rows go to a delta that grows in place,
merged into the base once it passes a share of it. Rows are never removed one by one: a merge
empties the rows of deleted articles.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sparse_dot_topn import sp_matmul_topn

from models.topk import default_threads

# Delta rows are merged into the frozen base (and its transpose rebuilt) once they exceed this
# share of the base: the rebuild is O(nnz), so merging rarely keeps upserts cheap on average.
MERGE_FRACTION = 0.1
# ... but never for fewer delta rows than this: small corpora would otherwise merge constantly.
MERGE_MIN_ROWS = 1024
# Deleted rows still in the base widen every pool refill's library top-n by one each; purging
# them rebuilds the base, so it is done once this many have piled up.
MAX_DEAD_IN_BASE = 512


class BlendedRows:
    """Every blended row an index has given out (dead rows included), by row number.

    Parameters
    ----------
    base : csr_matrix
        The rows so far, zeros eliminated and indices sorted (the model's blended matrix).
    """

    base: sp.csr_matrix
    base_t: sp.csr_matrix
    base_rows: int
    dead_in_base: int
    _delta_data: np.ndarray
    _delta_indices: np.ndarray
    _delta_indptr: np.ndarray
    _delta_rows: int
    _delta_nnz: int

    def __init__(self, base: sp.csr_matrix) -> None:
        self.features = base.shape[1]
        self._threads = default_threads()
        self._set_base(base)

    def __len__(self) -> int:
        return self.base_rows + self._delta_rows

    def append(self, vector: sp.csr_matrix) -> None:
        """Add one row (1 x features) at the end of the delta."""
        nnz = vector.nnz
        need = self._delta_nnz + nnz
        if need > self._delta_data.size:
            size = max(2 * self._delta_data.size, need)
            self._delta_data = resized(self._delta_data, size)
            self._delta_indices = resized(self._delta_indices, size)
        if self._delta_rows + 2 > self._delta_indptr.size:
            self._delta_indptr = resized(self._delta_indptr, 2 * self._delta_indptr.size)
        self._delta_data[self._delta_nnz : need] = vector.data
        self._delta_indices[self._delta_nnz : need] = vector.indices
        self._delta_nnz = need
        self._delta_rows += 1
        self._delta_indptr[self._delta_rows] = need

    def retire(self, row: int) -> None:
        """Note that ``row``'s article is gone (a dead base row widens every library top-n)."""
        if row < self.base_rows:
            self.dead_in_base += 1

    def delta(self) -> sp.csr_matrix:
        """The appended rows as a CSR view (no copy)."""
        return sp.csr_matrix(
            (
                self._delta_data[: self._delta_nnz],
                self._delta_indices[: self._delta_nnz],
                self._delta_indptr[: self._delta_rows + 1],
            ),
            shape=(self._delta_rows, self.features),
            copy=False,
        )

    def rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """Blended rows of sorted ``rows`` (base rows first, then delta rows)."""
        in_base = rows[rows < self.base_rows]
        in_delta = rows[rows >= self.base_rows] - self.base_rows
        parts = []
        if in_base.size:
            parts.append(self.base[in_base])
        if in_delta.size:
            parts.append(self.delta()[in_delta])
        return sp.csr_matrix(sp.vstack(parts, format="csr"))

    def scores_against_all(self, vector: sp.csr_matrix) -> np.ndarray:
        """Blended scores of one row against every row so far (dead rows included)."""
        out = np.zeros(len(self), dtype=np.float64)
        if self.base_rows:
            product = sp.csr_matrix(vector @ self.base_t)
            out[product.indices] = product.data
        if self._delta_rows:
            # Each score sums the same products in the same (feature) order as the library's
            # and the base's, so scores are bit-identical to a full build's: ties stay ties.
            dense = vector.toarray().ravel()
            out[self.base_rows :] = self.delta() @ dense
        return out

    def products(
        self, query: sp.csr_matrix, width: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The query rows' products worth ranking for a top-``width`` (dead rows included).

        Against the base, the library's top-n, with room for the row itself, every dead base
        row and one more: the kept last place is then compared with a score the library really
        ranked below it. Against the delta, every product. Returns (query row, column, score)
        triples, and per query row whether the library cut it (``full``) and the smallest
        score it kept there (``row_min``, inf when none).
        """
        b = query.shape[0]
        parts_rows, parts_cols, parts_data = [], [], []
        full = np.zeros(b, dtype=bool)
        row_min = np.full(b, np.inf)
        if self.base_rows:
            top_n = min(width + 2 + self.dead_in_base, self.base_rows)
            block = sp.csr_matrix(
                sp_matmul_topn(
                    query,
                    self.base_t,
                    top_n=top_n,
                    n_threads=self._threads if self._threads > 1 else None,
                )
            )
            counts = np.diff(block.indptr)
            local = np.repeat(np.arange(b), counts)
            full = counts == top_n
            np.minimum.at(row_min, local, block.data)
            parts_rows.append(local)
            parts_cols.append(block.indices.astype(np.int64))
            parts_data.append(block.data)
        if self._delta_rows:
            product = sp.csr_matrix(query @ self.delta().T)
            parts_rows.append(np.repeat(np.arange(b), np.diff(product.indptr)))
            parts_cols.append(product.indices.astype(np.int64) + self.base_rows)
            parts_data.append(product.data)
        local = np.concatenate(parts_rows) if parts_rows else np.zeros(0, np.int64)
        cols = np.concatenate(parts_cols) if parts_cols else np.zeros(0, np.int64)
        data = np.concatenate(parts_data) if parts_data else np.zeros(0)
        return local, cols, data, full, row_min

    def maybe_merge(self, alive: np.ndarray) -> None:
        """Fold the delta into the base, emptying dead rows, when either has grown too big.

        ``alive``: per row so far, whether its article is live.
        """
        if (
            self._delta_rows <= max(MERGE_MIN_ROWS, MERGE_FRACTION * self.base_rows)
            and self.dead_in_base <= MAX_DEAD_IN_BASE
        ):
            return
        merged = sp.csr_matrix(sp.vstack([self.base, self.delta()], format="csr"))
        counts = np.diff(merged.indptr)
        mask = np.repeat(alive, counts)
        indptr = np.zeros(len(self) + 1, dtype=merged.indptr.dtype)
        np.cumsum(counts * alive, out=indptr[1:])
        base = sp.csr_matrix((merged.data[mask], merged.indices[mask], indptr), shape=merged.shape)
        self._set_base(base)

    def _set_base(self, base: sp.csr_matrix) -> None:
        """Freeze ``base`` (all rows so far) and start an empty delta."""
        self.base = base
        self.base_t = sp.csr_matrix(base.T)
        self.base_rows = base.shape[0]
        self.dead_in_base = 0
        self._delta_data = np.zeros(1024, dtype=np.float64)
        self._delta_indices = np.zeros(1024, dtype=base.indices.dtype)
        self._delta_indptr = np.zeros(1024, dtype=base.indices.dtype)
        self._delta_rows = 0
        self._delta_nnz = 0


def grown(array: np.ndarray, capacity: int, fill: object) -> np.ndarray:
    """``array`` padded with ``fill`` to ``capacity`` rows."""
    out = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


def resized(array: np.ndarray, size: int) -> np.ndarray:
    """A 1-d array grown to ``size`` entries (zeros after the old ones)."""
    out = np.zeros(size, dtype=array.dtype)
    out[: array.size] = array
    return out
