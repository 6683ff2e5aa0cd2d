"""Exact top-k against a brute-force dense oracle, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from models.topk import top_k
from tests.oracle import dense_top_k


def random_rows(seed: int, n: int, d: int, density: float) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    matrix = sp.random(n, d, density=density, random_state=rng, format="csr")
    return normalize(matrix)


@pytest.mark.parametrize("seed", range(12))
def test_matches_dense_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 80)), int(rng.integers(1, 40))
    matrix = random_rows(seed, n, d, float(rng.uniform(0.05, 0.6)))
    k = int(rng.integers(1, 12))
    ids, scores = top_k(matrix, k, block_rows=int(rng.integers(1, 30)))
    want_ids, want_scores = dense_top_k(matrix, k)
    np.testing.assert_allclose(
        np.nan_to_num(scores, nan=-1), np.nan_to_num(want_scores, nan=-1), atol=1e-6
    )
    # Random continuous data has no ties, so the ids must agree exactly too.
    np.testing.assert_array_equal(ids, want_ids)


def test_min_score_matches_oracle() -> None:
    matrix = random_rows(7, 60, 15, 0.3)
    ids, scores = top_k(matrix, 8, min_score=0.3)
    want_ids, want_scores = dense_top_k(matrix, 8, min_score=0.3)
    np.testing.assert_array_equal(ids, want_ids)
    assert np.nanmin(scores) >= 0.3


def test_properties_self_excluded_sorted_symmetric() -> None:
    matrix = random_rows(3, 120, 25, 0.2)
    k = 10
    ids, scores = top_k(matrix, k, block_rows=16)
    n = matrix.shape[0]
    assert ids.shape == (n, k)
    dense = (matrix @ matrix.T).toarray()
    for row in range(n):
        valid = ids[row] >= 0
        assert row not in ids[row]
        # -1 padding only at the end, scores non-increasing.
        assert not np.any(valid[1:] & ~valid[:-1])
        assert np.all(np.diff(scores[row][valid]) <= 1e-12)
        for col, score in zip(ids[row][valid], scores[row][valid], strict=True):
            # Symmetric: the score of (row, col) is the score of (col, row).
            assert score == pytest.approx(dense[col, row], abs=1e-9)


def test_k_larger_than_corpus_is_capped_at_n_minus_one() -> None:
    matrix = normalize(sp.csr_matrix(np.ones((4, 3))))
    ids, scores = top_k(matrix, 10)
    assert ((ids >= 0).sum(axis=1) == 3).all()
    assert (ids[:, 3:] == -1).all() and np.isnan(scores[:, 3:]).all()


def test_ties_broken_by_lower_index_even_at_the_cut() -> None:
    # Row 0 has ten exact duplicates: every one ties at score 1.0. Whatever order the library
    # returns ties in, the kept three must be the three lowest rows.
    base = np.array([[1.0, 2.0, 0.0]])
    dense = np.vstack([base] * 11 + [np.array([[0.0, 1.0, 1.0]])])
    matrix = normalize(sp.csr_matrix(dense))
    ids, scores = top_k(matrix, 3)
    np.testing.assert_array_equal(ids[0], [1, 2, 3])
    np.testing.assert_array_equal(ids[10], [0, 1, 2])
    np.testing.assert_allclose(scores[0], 1.0)


def test_zero_rows_and_stored_zeros_have_no_neighbours() -> None:
    # Row 0 is a stored (explicit) zero: an article with no known word. It must get no
    # neighbours and be no one's neighbour, and the other rows must match the oracle.
    matrix = sp.csr_matrix(
        (np.array([0.0, 1.0, 1.0, 1.0]), np.array([0, 0, 0, 1]), np.array([0, 1, 2, 4])),
        shape=(3, 2),
    )
    matrix = normalize(matrix)
    ids, scores = top_k(matrix, 2)
    assert (ids[0] == -1).all() and np.isnan(scores[0]).all()
    assert 0 not in ids
    want_ids, want_scores = dense_top_k(matrix, 2)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(np.nan_to_num(scores, nan=-1), np.nan_to_num(want_scores, nan=-1))


def test_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        top_k(sp.csr_matrix(np.eye(3)), 0)
