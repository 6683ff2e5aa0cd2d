"""Exact top-k against a brute-force dense oracle, and its properties."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize(
    ("tile", "sparse", "seed"),
    [(1, 0, 0), (2, 0, 1), (3, 2, 2), (7, 0, 3), (7, 10**9, 5), (64, 0, 4), (64, 10**9, 6)],
)
def test_matches_oracle_across_column_tiles(
    monkeypatch: pytest.MonkeyPatch, tile: int, sparse: int, seed: int
) -> None:
    # Real corpora need many tiles (8,192 columns each); small tiles put every case of the
    # tile loop (a row's neighbours in other tiles, its own tile, a short last tile) in reach.
    # ``sparse``: postings up to which a row's touched columns are visited instead of the tile
    # scanned (0: always scan; 10**9: never scan).
    from models import topk_kernel

    monkeypatch.setattr(topk_kernel, "TILE_COLUMNS", tile)
    monkeypatch.setattr(topk_kernel, "SPARSE_SCAN_POSTINGS", sparse)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 90))
    matrix = random_rows(seed, n, int(rng.integers(3, 30)), float(rng.uniform(0.1, 0.5)))
    k = int(rng.integers(1, 15))
    min_score = float(rng.choice([0.0, 0.2]))
    ids, scores = top_k(matrix, k, min_score=min_score, block_rows=int(rng.integers(1, 40)))
    want_ids, want_scores = dense_top_k(matrix, k, min_score=min_score)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(
        np.nan_to_num(scores, nan=-1), np.nan_to_num(want_scores, nan=-1), atol=1e-9
    )


@pytest.mark.parametrize(("tile", "sparse"), [(1, 0), (2, 0), (5, 0), (8192, 0), (5, 10**9)])
def test_ties_across_tiles_keep_the_lowest_rows(
    monkeypatch: pytest.MonkeyPatch, tile: int, sparse: int
) -> None:
    # Twenty copies of one row spread over many tiles: every pair ties at 1.0, so each copy's
    # top 4 must be the four lowest other copies, whichever tile they arrive from.
    from models import topk_kernel

    monkeypatch.setattr(topk_kernel, "TILE_COLUMNS", tile)
    monkeypatch.setattr(topk_kernel, "SPARSE_SCAN_POSTINGS", sparse)
    other = np.array([[0.0, 1.0, 1.0]])
    dense = np.vstack([other] * 3 + [np.array([[1.0, 2.0, 0.0]])] * 20)
    ids, scores = top_k(normalize(sp.csr_matrix(dense)), 4)
    for row in range(3, 23):
        want = [col for col in range(3, 23) if col != row][:4]
        np.testing.assert_array_equal(ids[row], want)
    np.testing.assert_array_equal(ids[22], [3, 4, 5, 6])


def test_min_score_boundary_is_inclusive() -> None:
    # Scores exactly equal to min_score are kept (">= min_score"), as in the oracle.
    dense = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    matrix = sp.csr_matrix(dense)
    ids, scores = top_k(matrix, 3, min_score=0.6)
    np.testing.assert_array_equal(ids[0], [1, 2, -1])
    np.testing.assert_allclose(scores[0, :2], [1.0, 0.6])
    want_ids, _ = dense_top_k(matrix, 3, min_score=0.6)
    np.testing.assert_array_equal(ids, want_ids)


def test_thread_count_does_not_change_the_result() -> None:
    matrix = random_rows(11, 300, 40, 0.15)
    one = top_k(matrix, 12, n_threads=1, block_rows=37)
    two = top_k(matrix, 12, n_threads=2, block_rows=300)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_pair_scores_are_the_same_number_both_ways() -> None:
    # Both directions sum the shared columns in column order, so (i, j) and (j, i) agree to
    # the bit: a pair can never be in one list and "tied but cut" from the other.
    matrix = random_rows(5, 200, 30, 0.2)
    ids, scores = top_k(matrix, 15)
    position = {
        (row, int(col)): scores[row, rank]
        for row in range(ids.shape[0])
        for rank, col in enumerate(ids[row])
        if col >= 0
    }
    both = [(pair, score) for pair, score in position.items() if pair[::-1] in position]
    assert len(both) > 100
    for (row, col), score in both:
        assert score == position[(col, row)]


def test_concurrent_calls_from_threads_give_the_serial_result() -> None:
    from concurrent.futures import ThreadPoolExecutor

    matrices = [random_rows(seed, 150, 30, 0.2) for seed in range(4)]
    serial = [top_k(m, 7) for m in matrices]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda m: top_k(m, 7, block_rows=25), matrices))
    for (want_ids, want_scores), (ids, scores) in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(scores, want_scores)


def test_very_sparse_rows_match_the_oracle_on_the_visiting_path() -> None:
    # Two or three tags out of many: few postings per row, so the default limit sends every
    # row down the "visit the touched columns" path; results must not depend on the path.
    rng = np.random.default_rng(8)
    n, tags = 3000, 900
    rows = np.repeat(np.arange(n), 3)
    cols = rng.integers(0, tags, size=rows.size)
    matrix = normalize(sp.csr_matrix((rng.uniform(0.5, 2, rows.size), (rows, cols)), (n, tags)))
    ids, scores = top_k(matrix, 5)
    want_ids, want_scores = dense_top_k(matrix, 5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(
        np.nan_to_num(scores, nan=-1), np.nan_to_num(want_scores, nan=-1), atol=1e-12
    )


def test_duplicate_entries_are_summed_before_scoring() -> None:
    # Row 1 stores one column as two entries, row 2 stores their sum: the rows are equal, so
    # they tie everywhere and the lower row must come first, and (i, j) must equal (j, i).
    data = np.array([0.7, 0.3, 0.5, 0.8, 0.9, 0.1])
    indices = np.array([0, 0, 1, 1, 0, 1])
    matrix = sp.csr_matrix((data, indices, np.array([0, 1, 4, 6])), shape=(3, 2))
    assert not matrix.has_canonical_format
    canonical = matrix.copy()
    canonical.sum_duplicates()
    ids, scores = top_k(matrix, 2)
    want_ids, want_scores = top_k(canonical, 2)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(ids, dense_top_k(canonical, 2)[0])


def test_kernel_cache_directory_is_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # numba unpickles what it finds in its cache directory: a directory someone else could
    # have planted (here: world-writable) must not be used.
    import tempfile

    from models import topk_kernel

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    own = Path(topk_kernel._private_cache_dir())
    assert own.parent == tmp_path and own.stat().st_mode & 0o777 == 0o700
    own.chmod(0o777)
    other = Path(topk_kernel._private_cache_dir())
    assert other != own and other.stat().st_mode & 0o077 == 0
