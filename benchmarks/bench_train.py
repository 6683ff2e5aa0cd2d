"""Training benchmark: ``recs train`` end to end against plain top-k baselines.

Usage::

    python -m benchmarks.bench_train --reuters path/to/reuters21578 [--size 200000] [--k 50]
        [--nn-sample 2000] [--out fragment.md]

For the Reuters corpus and for a synthetic corpus of ``--size`` articles generated from it
(deterministically, see :func:`benchmarks.corpora.synthesise`), in one run:

1. ``recs train`` as a subprocess, end to end (read, fit, top-k, SVD re-rank, save, reload):
   wall time and the child's peak RSS (``os.wait4`` rusage). The child is the ``recs`` click
   command invoked in-process by this module's ``_child`` mode, with thin timers wrapped
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
The baselines are in benchmarks/train_baselines.py, the tables in benchmarks/train_report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.corpora import synthesise
from benchmarks.harness import REPO
from benchmarks.train_baselines import run_baselines
from benchmarks.train_report import report
from benchmarks.train_results import Baselines, TrainRun
from models.records import read_articles, write_articles_jsonl


# ------------------------------------------------------------------------------ child mode
def _child(argv: list[str]) -> None:
    """Run ``recs <argv>`` in this process with stage timers; write them as JSON.

    ``argv`` is ``STAGES_JSON recs-args...``. The timers only wrap the functions the
    command calls anyway, so the work done is exactly ``recs train``'s.
    """
    stages_path, *recs_args = argv
    started = time.perf_counter()
    import models.blocks as blocks_mod
    import models.model as model_mod
    import scripts.cli as cli_mod
    import scripts.training as training_mod
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

    training_mod.read_articles = timed("read", training_mod.read_articles)
    training_mod.save_model = timed("save", training_mod.save_model)
    training_mod.load_model = timed("reload", training_mod.load_model)
    TextVectorizer.fit_transform = timed("text fit", TextVectorizer.fit_transform)  # type: ignore[method-assign]
    TagVectorizer.fit = timed("tag fit", TagVectorizer.fit)  # type: ignore[method-assign]
    TagVectorizer.transform = timed("tag fit", TagVectorizer.transform)  # type: ignore[method-assign]
    model_mod.RelatedModel.blended_matrix = timed(  # type: ignore[method-assign]
        "blend", model_mod.RelatedModel.blended_matrix
    )
    blocks_mod.top_k_rows = timed("top-k pool", blocks_mod.top_k_rows)
    model_mod.fit_latent_components = timed("svd fit", model_mod.fit_latent_components)
    model_mod.RelatedModel.latent_vectors = timed(  # type: ignore[method-assign]
        "latent vectors", model_mod.RelatedModel.latent_vectors
    )
    blocks_mod.rerank = timed("rerank", blocks_mod.rerank)
    try:
        cli_mod.cli(recs_args, prog_name="recs", standalone_mode=False)
    finally:
        stages["total in process"] = time.perf_counter() - started
        Path(stages_path).write_text(json.dumps(stages))


# ------------------------------------------------------------------------------ measuring
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
        cmd = [sys.executable, "-m", "benchmarks.bench_train", "_child", str(stages_path)]
        cmd += train_args
    else:
        recs = shutil.which("recs") or "recs"
        cmd = [recs, *train_args]
    log = (work / "train.log").open("w")
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
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
        from scripts.cli import cli

        # In this process: the checkout's command line, as the training child runs it.
        cli(["import", "reuters", str(args.reuters), "-o", str(reuters)], standalone_mode=False)
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
