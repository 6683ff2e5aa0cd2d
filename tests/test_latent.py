"""The re-ranking's latent space: the seeded row sample and the randomized SVD fit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.config import ModelConfig
from models.latent import fit_latent_components, fit_row_sample
from models.model import RelatedModel
from models.records import read_articles
from tests.paths import SAMPLE_ARTICLES


def _low_rank(
    seed: int, rows: int, columns: int, rank: int, zero_share: float = 0.3
) -> sp.csr_matrix:
    """A sparse matrix of known rank-``rank`` structure plus small noise."""
    rng = np.random.default_rng(seed)
    dense = (
        rng.standard_normal((rows, rank))
        * np.linspace(10, 5, rank)
        @ rng.standard_normal((rank, columns))
    )
    dense += 0.01 * rng.standard_normal((rows, columns))
    dense[rng.random((rows, columns)) < zero_share] = 0.0
    return sp.csr_matrix(dense)


def _space_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between two row spaces (all 1: the same space)."""
    qa, _ = np.linalg.qr(a.astype(np.float64).T)
    qb, _ = np.linalg.qr(b.astype(np.float64).T)
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def test_row_sample_is_all_rows_up_to_the_limit_then_seeded_and_sorted() -> None:
    cfg = ModelConfig(rerank_components=10, rerank_fit_rows=100)
    assert fit_row_sample(100, cfg) is None
    rows = fit_row_sample(1_000, cfg)
    assert rows is not None and len(rows) == 100 and len(set(rows.tolist())) == 100
    assert np.all(np.diff(rows) > 0) and rows.max() < 1_000
    np.testing.assert_array_equal(rows, fit_row_sample(1_000, cfg))
    other = fit_row_sample(1_000, cfg.replace(random_state=1))
    assert other is not None and not np.array_equal(rows, other)


def test_components_span_the_exact_top_singular_space() -> None:
    matrix = _low_rank(0, 300, 80, rank=6)
    components = fit_latent_components(matrix, ModelConfig(rerank_components=6))
    assert components.shape == (6, 80) and components.dtype == np.float32
    # Orthonormal rows: the latent cosines are those of a projection.
    np.testing.assert_allclose(components @ components.T, np.eye(6), atol=1e-5)
    exact = np.linalg.svd(matrix.toarray(), full_matrices=False)[2][:6]
    assert _space_agreement(components, exact).min() > 0.9999


def test_a_sample_of_the_rows_finds_the_same_space() -> None:
    # Dense rows: zeroing entries at random is noise that 200 rows would not average out.
    matrix = _low_rank(1, 2_000, 60, rank=5, zero_share=0.0)
    cfg = ModelConfig(rerank_components=5, rerank_fit_rows=200)
    sampled = fit_latent_components(matrix, cfg)
    exact = np.linalg.svd(matrix.toarray(), full_matrices=False)[2][:5]
    assert _space_agreement(sampled, exact).min() > 0.999
    # It really is fitted on the sample: the same as fitting those rows alone.
    rows = fit_row_sample(2_000, cfg)
    assert rows is not None
    alone = fit_latent_components(matrix[rows], cfg.replace(rerank_fit_rows=10_000))
    np.testing.assert_array_equal(sampled, alone)


def test_model_fitted_on_a_sample_projects_every_row() -> None:
    articles = read_articles([SAMPLE_ARTICLES]).articles
    cfg = ModelConfig(k=10, rerank_components=20, rerank_fit_rows=len(articles) // 2)
    model = RelatedModel(config=cfg).fit(articles)
    assert model.rerank_active_ and model.latent_ is not None
    assert model.latent_.shape == (len(articles), 20)
    norms = np.linalg.norm(model.latent_, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
    full = RelatedModel(config=cfg.replace(rerank_fit_rows=10_000)).fit(articles)
    # Another latent space, so other re-ranked lists, but the same exact pool.
    assert not np.array_equal(model.svd_components_, full.svd_components_)
    assert model.cfg.config_hash() != full.cfg.config_hash()


@pytest.mark.parametrize("rows", [0, 20, 1.5, True])
def test_fit_rows_must_exceed_the_components(rows: object) -> None:
    with pytest.raises(ValueError, match="rerank_fit_rows must be an integer > rerank_components"):
        ModelConfig(rerank_components=20, rerank_fit_rows=rows)  # type: ignore[arg-type]
