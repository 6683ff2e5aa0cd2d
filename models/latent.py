"""The latent (truncated SVD) space of the re-ranking stage, fitted on a bounded row sample."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_range_finder
from threadpoolctl import threadpool_limits

from models.config import ModelConfig


def latent_component_count(n_rows: int, n_columns: int, cfg: ModelConfig) -> int:
    """SVD components the re-ranking uses for an ``n_rows`` x ``n_columns`` blended matrix."""
    return min(cfg.rerank_components, n_columns - 1, n_rows - 1)


def fit_row_sample(n_rows: int, cfg: ModelConfig) -> np.ndarray | None:
    """Sorted row numbers the SVD is fitted on, or ``None`` for all rows.

    At most ``rerank_fit_rows`` rows, drawn without replacement with ``random_state``: the
    fit then costs the same at 50k or 5M articles, and the same corpus gives the same sample.
    """
    if n_rows <= cfg.rerank_fit_rows:
        return None
    rng = np.random.default_rng(cfg.random_state)
    return np.sort(rng.choice(n_rows, size=cfg.rerank_fit_rows, replace=False))


def fit_latent_components(blended: sp.csr_matrix, cfg: ModelConfig) -> np.ndarray:
    """Truncated-SVD components (components x columns, float32) of the blended rows.

    Every row is projected onto them afterwards (``RelatedModel.latent_vectors``); only the
    fit is limited to the sample of :func:`fit_row_sample`.
    """
    n_rows, n_columns = blended.shape
    components = latent_component_count(n_rows, n_columns, cfg)
    if components < 2:
        raise ValueError(f"a {n_rows} x {n_columns} matrix has too few rows or columns for an SVD")
    rows = fit_row_sample(n_rows, cfg)
    sample = blended if rows is None else blended[rows]
    # One BLAS thread: the dense steps are 160 columns wide, too small to share, and on a busy
    # machine two OpenBLAS threads spin against each other (at 50k articles under load 6:
    # 23 s with two threads against 2 s with one, the same CPU work).
    with threadpool_limits(limits=1, user_api="blas"):
        # float32 input: 15-23% faster on Reuters, same P@10 to 4 decimals (docs/evaluation.md).
        return _randomized_components(sample.astype(np.float32), components, cfg.random_state)


def _randomized_components(matrix: sp.csr_matrix, components: int, seed: int) -> np.ndarray:
    """Top right singular vectors by randomized subspace iteration (Halko et al. 2011).

    scikit-learn's ``randomized_svd`` with its defaults (10 extra dimensions, 7 iterations),
    except the last step: it takes the dense SVD of the wide ``Q.T @ X`` (160 x 37k at 50k
    articles), which took 6 s; the QR of its transpose and the SVD of the small triangle give
    the same vectors in 0.9 s. Signs and the order within equal singular values may differ
    from ``TruncatedSVD``; the re-ranking only uses the spanned space (cosines of projections).
    """
    basis = randomized_range_finder(
        matrix,
        size=components + 10,
        n_iter=7,
        power_iteration_normalizer="auto",
        random_state=np.random.RandomState(seed),
    )
    # X.T @ Q is the transpose of Q.T @ X: tall (columns x 160), so its QR is cheap.
    q_wide, r = scipy.linalg.qr(np.asarray(matrix.T @ basis), mode="economic")
    _, _, w_t = scipy.linalg.svd(r.T, full_matrices=False)
    return np.ascontiguousarray((q_wide @ w_t[:components].T).T, dtype=np.float32)
