"""The baselines of benchmarks/bench_train.py, timed in this process on the model's own blended
matrix: TF-IDF + sparse_dot_topn, NearestNeighbors brute on a sample, the model's top-k alone."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks.train_results import Baselines
from models.records import Article, read_articles

THREADS = 2


def blended(articles: Sequence[Article], timings: dict[str, float]) -> sp.csr_matrix:
    """The model's blended matrix, built with the model's own classes and default config."""
    from models.config import ModelConfig
    from models.model import RelatedModel, tag_vectorizer, text_vectorizer

    cfg = ModelConfig()
    model = RelatedModel(config=cfg)
    t0 = time.perf_counter()
    model.text_ = text_vectorizer(cfg)
    model.text_matrix_ = model.text_.fit_transform(
        [a.title for a in articles], [a.body for a in articles]
    )
    timings["text"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.tags_ = tag_vectorizer(cfg)
    tag_lists = [a.tags for a in articles]
    model.tags_.fit(tag_lists)
    model.tag_matrix_ = model.tags_.transform(tag_lists)
    matrix = model.blended_matrix()
    timings["tags"] = time.perf_counter() - t0
    return matrix


def run_baselines(
    corpus: Path, k: int, nn_sample: int, seed: int, experiments: dict[str, bool]
) -> Baselines:
    from sklearn.neighbors import NearestNeighbors
    from sparse_dot_topn import sp_matmul_topn

    t0 = time.perf_counter()
    articles = read_articles([corpus]).articles
    read = time.perf_counter() - t0
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    c0 = time.process_time()
    matrix = blended(articles, timings)
    cpu["text+tags"] = time.process_time() - c0
    n = matrix.shape[0]
    del articles

    t0, c0 = time.perf_counter(), time.process_time()
    sp_matmul_topn(matrix, sp.csr_matrix(matrix.T), top_n=k + 1, n_threads=THREADS)
    sdt_full = time.perf_counter() - t0
    cpu["sdt full"] = time.process_time() - c0
    print(f"  tf-idf {timings['text']:.1f}s tags {timings['tags']:.1f}s sdt {sdt_full:.1f}s")

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(nn_sample, n), replace=False))
    t0 = time.perf_counter()
    nn = NearestNeighbors(metric="cosine", algorithm="brute", n_jobs=THREADS).fit(matrix)
    nn_fit = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    nn.kneighbors(matrix[sample], n_neighbors=k + 1)
    nn_time = time.perf_counter() - t0
    cpu["nn sample"] = time.process_time() - c0
    transposed = sp.csr_matrix(matrix.T)
    t0 = time.perf_counter()
    sp_matmul_topn(matrix[sample], transposed, top_n=k + 1, n_threads=THREADS)
    sdt_sample = time.perf_counter() - t0
    print(f"  NN sample {nn_time:.1f}s, sdt sample {sdt_sample:.2f}s ({sample.size} rows)")
    from models.topk import top_k

    # Import numba and load (or compile) the kernel outside the timing, as sdt was imported.
    top_k(matrix[:64], 2, n_threads=THREADS)
    t0, c0 = time.perf_counter(), time.process_time()
    top_k(matrix, k, n_threads=THREADS)
    model_topk = time.perf_counter() - t0
    cpu["model top-k"] = time.process_time() - c0
    print(f"  models.topk.top_k all rows {model_topk:.1f}s (sdt {sdt_full:.1f}s)")
    result = Baselines(
        read,
        timings["text"],
        timings["tags"],
        sdt_full,
        nn_fit,
        nn_time,
        sdt_sample,
        int(sample.size),
        n,
        matrix.shape,
        int(matrix.nnz),
        model_topk,
        cpu=cpu,
    )
    if experiments.get("svd"):
        result.extra.update(svd_experiments(matrix))
    return result


def svd_experiments(matrix: sp.csr_matrix) -> dict[str, float]:
    """EXPERIMENT: TruncatedSVD fit time at the current and cheaper settings."""
    from sklearn.decomposition import TruncatedSVD

    out: dict[str, float] = {}
    for components, n_iter, dtype in (
        (150, 7, np.float64),
        (150, 4, np.float64),
        (150, 7, np.float32),
    ):
        data = matrix.astype(dtype)
        t0 = time.perf_counter()
        TruncatedSVD(
            n_components=components, algorithm="randomized", n_iter=n_iter, random_state=0
        ).fit(data)
        spent = time.perf_counter() - t0
        key = f"svd c={components} n_iter={n_iter} {np.dtype(dtype).name}"
        out[key] = spent
        print(f"  {key}: {spent:.1f}s")
    return out
