"""Brute-force references for the algorithm tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def dense_top_k(
    matrix: sp.spmatrix | np.ndarray, k: int, min_score: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by a dense similarity matrix and a plain sort: small inputs only."""
    dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    sims = dense @ dense.T
    n = sims.shape[0]
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan)
    for row in range(n):
        cand = sorted(
            (-sims[row, col], col)
            for col in range(n)
            if col != row and sims[row, col] > 0 and sims[row, col] >= min_score
        )
        for rank, (neg, col) in enumerate(cand[:k]):
            ids[row, rank] = col
            scores[row, rank] = -neg
    return ids, scores
