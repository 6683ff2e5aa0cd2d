"""Training benchmark: ``recs train`` end to end against plain top-k baselines.

Usage::

    python benchmarks/bench_train.py --reuters /path/to/reuters21578 [--size 200000] [--k 50]
        [--nn-sample 2000] [--out fragment.md]

For the Reuters corpus and for a synthetic corpus of ``--size`` articles generated from it
(deterministically, see :func:`synthesise`), in one run:

1. ``recs train`` as a subprocess, end to end (read, fit, top-k, SVD re-rank, save, reload):
   wall time and the child's peak RSS (``os.wait4`` rusage). The child is the ``recs`` click
   command invoked in-process by this script's ``_child`` mode, with thin timers wrapped
   around each stage (``--no-stage-timers`` runs the plain ``recs`` console script instead).
2. Baseline "TF-IDF + sparse_dot_topn": text TF-IDF and tag IDF fit into the same blended
   matrix the model uses, then one ``sp_matmul_topn(X, X.T, top_n=k+1, n_threads=2)``.
3. Baseline "NearestNeighbors brute": ``NearestNeighbors(metric="cosine", algorithm="brute",
   n_jobs=2)`` on the blended matrix; ``kneighbors`` for ``--nn-sample`` random query rows,
   extrapolated linearly to every row, with sparse_dot_topn timed on the same rows.

4. The model's own top-k (``models.topk.top_k``, the tiled kernel) on the same matrix, all
   rows, k neighbours: how much of the gap to the baselines is the top-k itself.

Experiments (clearly labelled in the output, never used for the pass/fail rows):
``--svd-experiments`` times the SVD stage at other settings.

Every target is a ratio against baselines measured in the same run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

# Run from a checkout without installing: the repository root holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.records import Article, read_articles, write_articles_jsonl  # noqa: E402

THREADS = 2
TRAIN_RATIO_TARGET = 1.5
NN_RATIO_TARGET = 5.0
PEAK_MB_TARGET = 4096.0
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ------------------------------------------------------------------------------ corpus
def synthesise(articles: Sequence[Article], size: int, seed: int = 0) -> list[Article]:
    """``size`` articles derived from ``articles`` with a seeded RNG (same input, same output).

    Article ``i`` copies a uniformly drawn source's title, tags and date; its body keeps each
    source sentence with probability ``p ~ U(0.7, 0.9)`` (each word instead, when the body has
    fewer than 3 sentences; at least one unit is kept), then appends 1-3 consecutive sentences
    of another article sharing a random tag of the source (any other article when untagged).
    So the vocabulary stays Reuters' and each story has ~``size / len(articles)`` near-variants,
    which is what a multi-year archive of wire copy looks like to TF-IDF.
    """
    rng = np.random.default_rng(seed)
    sentences = [SENTENCE_END.split(a.body.strip()) if a.body.strip() else [] for a in articles]
    by_tag: dict[str, list[int]] = {}
    for row, article in enumerate(articles):
        for tag in article.tags:
            by_tag.setdefault(tag, []).append(row)
    n = len(articles)
    out: list[Article] = []
    for i in range(size):
        src = int(rng.integers(n))
        source = articles[src]
        keep_p = float(rng.uniform(0.7, 0.9))
        units = sentences[src]
        if len(units) < 3:
            units = source.body.split()
        kept = [u for u in units if rng.random() < keep_p]
        if units and not kept:
            kept = [units[int(rng.integers(len(units)))]]
        pool = by_tag.get(source.tags[int(rng.integers(len(source.tags)))]) if source.tags else None
        other = (
            pool[int(rng.integers(len(pool)))] if pool and len(pool) > 1 else int(rng.integers(n))
        )
        extra = sentences[other]
        if extra:
            start = int(rng.integers(len(extra)))
            kept.extend(extra[start : start + int(rng.integers(1, 4))])
        out.append(
            Article(
                id=f"syn-{i:07d}",
                title=source.title,
                body=" ".join(kept),
                tags=source.tags,
                published_at=source.published_at,
            )
        )
    return out


# ------------------------------------------------------------------------------ child mode
def _child(argv: list[str]) -> None:
    """Run ``recs <argv>`` in this process with stage timers; write them as JSON.

    ``argv`` is ``STAGES_JSON recs-args...``. The timers only wrap the functions the
    command calls anyway, so the work done is exactly ``recs train``'s.
    """
    stages_path, *recs_args = argv
    started = time.perf_counter()
    import sklearn.decomposition

    import models.model as model_mod
    import scripts.cli as cli_mod
    from models.tags import TagVectorizer
    from models.text import TextVectorizer

    stages: dict[str, float] = {"imports": time.perf_counter() - started}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    cli_mod.read_articles = timed("read", cli_mod.read_articles)
    cli_mod.save_model = timed("save", cli_mod.save_model)
    cli_mod.load_model = timed("reload", cli_mod.load_model)
    TextVectorizer.fit_transform = timed("text fit", TextVectorizer.fit_transform)  # type: ignore[method-assign]
    TagVectorizer.fit = timed("tag fit", TagVectorizer.fit)  # type: ignore[method-assign]
    TagVectorizer.transform = timed("tag fit", TagVectorizer.transform)  # type: ignore[method-assign]
    model_mod.RelatedModel.blended_matrix = timed(  # type: ignore[method-assign]
        "blend", model_mod.RelatedModel.blended_matrix
    )
    model_mod.top_k = timed("top-k pool", model_mod.top_k)
    svd_cls = sklearn.decomposition.TruncatedSVD
    svd_cls.fit = timed("svd fit", svd_cls.fit)
    model_mod.RelatedModel.latent_vectors = timed(  # type: ignore[method-assign]
        "latent vectors", model_mod.RelatedModel.latent_vectors
    )
    model_mod.rerank = timed("rerank", model_mod.rerank)
    try:
        cli_mod.cli(recs_args, prog_name="recs", standalone_mode=False)
    finally:
        stages["total in process"] = time.perf_counter() - started
        Path(stages_path).write_text(json.dumps(stages))


# ------------------------------------------------------------------------------ measuring
@dataclass
class TrainRun:
    label: str
    wall: float
    peak_mb: float
    ok: bool
    timed_out: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    # user + sys CPU seconds of the child: other users' load inflates wall time, not this.
    cpu: float = 0.0


def run_train(
    corpus: Path,
    work: Path,
    k: int,
    *,
    stage_timers: bool,
    timeout: float | None,
) -> TrainRun:
    """``recs train`` on ``corpus`` in a child process: wall time, peak RSS, stage times."""
    out = work / "model"
    shutil.rmtree(out, ignore_errors=True)
    stages_path = work / "stages.json"
    stages_path.unlink(missing_ok=True)
    train_args = ["train", "--articles", str(corpus), "--out", str(out), "--k", str(k), "--json"]
    if stage_timers:
        cmd = [sys.executable, __file__, "_child", str(stages_path), *train_args]
    else:
        recs = shutil.which("recs") or "recs"
        cmd = [recs, *train_args]
    log = (work / "train.log").open("w")
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = None if timeout is None else t0 + timeout
    timed_out = False
    while True:
        # wait4 on this child only: RUSAGE_CHILDREN would mix in every earlier child.
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            child.kill()
            timed_out = True
            pid, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    stages = json.loads(stages_path.read_text()) if stages_path.exists() else {}
    label = "recs train"
    ok = child.returncode == 0 and not timed_out
    if not ok and not timed_out:
        print((work / "train.log").read_text()[-2000:], file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    cpu = usage.ru_utime + usage.ru_stime
    return TrainRun(label, wall, usage.ru_maxrss / 1024.0, ok, timed_out, stages, cpu)


@dataclass
class Baselines:
    read: float
    text_fit: float
    tag_fit: float
    sdt_full: float
    nn_fit: float
    nn_sample: float
    sdt_sample: float
    sample: int
    n: int
    shape: tuple[int, int]
    nnz: int
    # models.topk.top_k on the same matrix, all rows (the model's own top-k, k neighbours).
    model_topk: float
    extra: dict[str, float] = field(default_factory=dict)
    # CPU seconds (all threads of this process) of the same steps, by step name.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def tfidf_sdt_cpu(self) -> float:
        return self.cpu["text+tags"] + self.cpu["sdt full"]

    @property
    def nn_extrapolated_cpu(self) -> float:
        return self.cpu["nn sample"] * self.n / self.sample

    @property
    def tfidf_sdt(self) -> float:
        return self.text_fit + self.tag_fit + self.sdt_full

    @property
    def nn_extrapolated(self) -> float:
        return self.nn_fit + self.nn_sample * self.n / self.sample

    @property
    def sdt_extrapolated(self) -> float:
        return self.sdt_sample * self.n / self.sample


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


# ------------------------------------------------------------------------------ report
def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def report(results: list[tuple[str, Baselines, list[TrainRun]]], args: argparse.Namespace) -> str:
    lines = [
        "| corpus | articles | run | recs train wall s | peak RSS MB | (tfidf+sdt) s"
        " | train/(tfidf+sdt) (target <= 1.5) | NN brute s (extrapolated) | NN/train (target >= 5)"
        " | peak < 4 GB |",
        "|---|---:|---|---:|---:|---:|---|---:|---|---|",
    ]
    for corpus, base, runs in results:
        for run in runs:
            wall = f">{run.wall:.0f} (killed)" if run.timed_out else f"{run.wall:.1f}"
            if not run.ok and not run.timed_out:
                wall = f"failed after {run.wall:.0f}"
            ratio = run.wall / base.tfidf_sdt
            nn_ratio = base.nn_extrapolated / run.wall
            prefix = ">" if run.timed_out else ""
            nn_prefix = "<" if run.timed_out else ""
            ratio_ok = ratio <= TRAIN_RATIO_TARGET and run.ok
            lines.append(
                f"| {corpus} | {base.n:,} | {run.label} | {wall} | {run.peak_mb:,.0f}"
                f" | {base.tfidf_sdt:.1f} | {prefix}{ratio:.2f} {_verdict(ratio_ok)}"
                f" | {base.nn_extrapolated:,.0f} | {nn_prefix}{nn_ratio:.1f}"
                f" {_verdict(nn_ratio >= NN_RATIO_TARGET and run.ok)}"
                f" | {_verdict(run.peak_mb < PEAK_MB_TARGET)} |"
            )
    lines += [
        "",
        "CPU seconds (user + sys, all threads; much less sensitive to other users' load):",
        "",
        "| corpus | run | recs train CPU s | (tfidf+sdt) CPU s | CPU ratio (<= 1.5)"
        " | NN brute CPU s (extrapolated) | NN/train CPU (>= 5) |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for corpus, base, runs in results:
        for run in runs:
            ratio = run.cpu / base.tfidf_sdt_cpu
            nn_ratio = base.nn_extrapolated_cpu / run.cpu
            lines.append(
                f"| {corpus} | {run.label} | {run.cpu:.1f} | {base.tfidf_sdt_cpu:.1f}"
                f" | {ratio:.2f} {_verdict(ratio <= TRAIN_RATIO_TARGET and run.ok)}"
                f" | {base.nn_extrapolated_cpu:,.0f}"
                f" | {nn_ratio:.1f} {_verdict(nn_ratio >= NN_RATIO_TARGET and run.ok)} |"
            )
    lines += [
        "",
        "Baseline details (seconds, this run):",
        "",
        "| corpus | matrix | read | text TF-IDF fit | tag fit + blend | sdt top-k all rows"
        " | models.topk all rows | sdt/models.topk | NN fit | NN kneighbors sample"
        " | sdt same sample | NN/sdt on sample |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for corpus, base, _ in results:
        lines.append(
            f"| {corpus} | {base.shape[0]:,} x {base.shape[1]:,}, nnz {base.nnz:,}"
            f" | {base.read:.1f} | {base.text_fit:.1f} | {base.tag_fit:.1f} | {base.sdt_full:.1f}"
            f" | {base.model_topk:.1f} | {base.sdt_full / base.model_topk:.2f}x"
            f" | {base.nn_fit:.2f} | {base.nn_sample:.1f} ({base.sample:,} rows)"
            f" | {base.sdt_sample:.2f} | {base.nn_sample / base.sdt_sample:.1f}x |"
        )
    stage_names: list[str] = []
    for _, _, runs in results:
        for run in runs:
            stage_names += [s for s in run.stages if s not in stage_names]
    if stage_names:
        lines += [
            "",
            "Stage times inside `recs train` (seconds):",
            "",
            "| corpus | run | " + " | ".join(stage_names) + " |",
            "|---|---|" + "---:|" * len(stage_names),
        ]
        for corpus, _, runs in results:
            for run in runs:
                cells = [f"{run.stages[s]:.1f}" if s in run.stages else "" for s in stage_names]
                lines.append(f"| {corpus} | {run.label} | " + " | ".join(cells) + " |")
    extras = [(c, b.extra) for c, b, _ in results if b.extra]
    if extras:
        lines += ["", "Experiments and estimates (labelled; not used for pass/fail):", ""]
        for corpus, extra in extras:
            for key, value in extra.items():
                lines.append(f"- {corpus}: {key} = {value:,.1f}")
    lines += [
        "",
        f"Command: `python benchmarks/bench_train.py {' '.join(sys.argv[1:])}`; "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {THREADS} threads.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        _child(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuters", required=True, type=Path, help="reuters21578 directory")
    parser.add_argument("--size", type=int, default=200_000, help="synthetic corpus size")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--nn-sample", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    parser.add_argument("--skip-reuters", action="store_true", help="only the synthetic corpus")
    parser.add_argument("--skip-synthetic", action="store_true", help="only Reuters")
    parser.add_argument("--work", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--train-timeout", type=float, help="kill recs train after N seconds")
    parser.add_argument("--skip-train", action="store_true", help="baselines only")
    parser.add_argument("--svd-experiments", action="store_true")
    parser.add_argument("--no-stage-timers", action="store_true", help="plain `recs` binary")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    reuters = work / "reuters.jsonl"
    if not reuters.exists():
        recs = shutil.which("recs") or "recs"
        subprocess.run(
            [recs, "import", "reuters", str(args.reuters), "-o", str(reuters)], check=True
        )
    corpora: list[tuple[str, Path]] = []
    if not args.skip_reuters:
        corpora.append(("Reuters-21578", reuters))
    if not args.skip_synthetic:
        synthetic = work / f"synthetic-{args.size}-seed{args.seed}.jsonl"
        if not synthetic.exists():
            t0 = time.perf_counter()
            source = read_articles([reuters]).articles
            write_articles_jsonl(synthesise(source, args.size, args.seed), synthetic)
            print(f"generated {synthetic} in {time.perf_counter() - t0:.0f}s")
        corpora.append((f"synthetic {args.size // 1000}k (from Reuters)", synthetic))

    experiments = {"svd": args.svd_experiments}
    results: list[tuple[str, Baselines, list[TrainRun]]] = []
    for name, path in corpora:
        print(f"== {name}: {path}", flush=True)
        runs: list[TrainRun] = []
        for _ in [] if args.skip_train else [1]:
            run = run_train(
                path,
                work,
                args.k,
                stage_timers=not args.no_stage_timers,
                timeout=args.train_timeout,
            )
            print(f"  {run.label}: {run.wall:.1f}s peak {run.peak_mb:.0f} MB ok={run.ok}")
            print(f"    stages {json.dumps({s: round(v, 1) for s, v in run.stages.items()})}")
            runs.append(run)
        base = run_baselines(path, args.k, args.nn_sample, args.seed, experiments)
        results.append((name, base, runs))
        text = report(results, args)
        print(text, flush=True)
        if args.out:
            args.out.write_text(text)


if __name__ == "__main__":
    main()
