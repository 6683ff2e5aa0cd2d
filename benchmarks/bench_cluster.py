"""Cluster benchmark: ``recs train`` in process against ``recs train --workers N``, same run.

Usage::

    python -m benchmarks.bench_cluster --reuters path/to/reuters21578 [--size 200000]
        [--workers 2] [--k 50] [--work DIR] [--only-cluster] [--out fragment.md]
        [--keep-model] [--keep-pools]

On a synthetic corpus of ``--size`` articles generated from Reuters-21578 (or from the bundled
sample without ``--reuters``) by :func:`benchmarks.corpora.synthesise`, the corpus of
docs/benchmarks.md, it runs, each as a child process:

1. ``recs train`` in process (skipped with ``--only-cluster``, e.g. for the 1M build);
2. ``recs train --workers N``: a local Dask cluster of N worker processes.

For each: wall time, CPU seconds of the client, the client's peak RSS and each worker's (read
in the processes themselves, since ``wait4`` would report the largest of the tree), and the
stage times of benchmarks/bench_train.py's timers plus "neighbours" (every block: the exact
pool and the re-ranking, in process or across the cluster). Derived: the cluster's overhead
(wall ratio, target <= 1.10 at 200k on 2 cores) and the per-pair cost of the neighbour stage
(core-seconds per row pair, ``stage s x cores / n^2``), which the projection to more cores uses.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.corpora import SAMPLE_ARTICLES, synthesise
from benchmarks.harness import REPO
from models.records import read_articles, write_articles_jsonl
from models.topk import default_threads

OVERHEAD_TARGET = 1.10


def _peak_rss_mb() -> float:
    """This process's peak RSS (run on each worker through ``client.run``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------ child mode
def _child(argv: list[str]) -> None:
    """``recs <argv>`` in this process with bench_train's stage timers plus ours.

    ``argv`` is ``EXTRA_JSON STAGES_JSON recs-args...``: bench_train's child writes its stage
    times to STAGES_JSON, this one the neighbour stage and the peak RSS figures to EXTRA_JSON.
    """
    extra_path, *rest = argv
    extra: dict[str, Any] = {"neighbours": 0.0, "workers_peak_mb": {}}

    def timed(fn: Callable[..., Any], cluster: bool) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            finally:
                extra["neighbours"] += time.perf_counter() - t0
                if cluster:  # while the workers are still up
                    extra["workers_peak_mb"] = dict(self.client.run(_peak_rss_mb))

        return wrapper

    from models import blocks

    blocks.InProcess.__call__ = timed(blocks.InProcess.__call__, False)  # type: ignore[method-assign]
    if "--workers" in rest or "--cluster" in rest:
        from models import cluster

        cluster.ClusterRunner.__call__ = timed(cluster.ClusterRunner.__call__, True)  # type: ignore[method-assign]
    from benchmarks.bench_train import _child as train_child

    try:
        train_child(rest)
    finally:
        extra["client_peak_mb"] = _peak_rss_mb()
        Path(extra_path).write_text(json.dumps(extra))


# ------------------------------------------------------------------------------ measuring
def run_train(
    corpus: Path, work: Path, k: int, extra_args: list[str], name: str, *, keep: bool = False
) -> dict[str, Any]:
    """``recs train`` on ``corpus`` in a child process; its figures as a dict. ``keep``: leave
    the model directory in ``work`` (for bench_publish and bench_updates)."""
    out = work / f"model-{name}"
    shutil.rmtree(out, ignore_errors=True)
    stages_path, extra_path = work / f"stages-{name}.json", work / f"extra-{name}.json"
    args = ["train", "--articles", str(corpus), "--out", str(out), "--k", str(k), "--json"]
    cmd = [sys.executable, "-m", "benchmarks.bench_cluster", "_child", str(extra_path)]
    cmd += [str(stages_path), *args, *extra_args]
    t0 = time.perf_counter()
    with (work / f"train-{name}.log").open("w") as log:
        child = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print((work / f"train-{name}.log").read_text()[-3000:], file=sys.stderr)
    arrays = (out / "arrays.npz").read_bytes() if code == 0 and not keep else b""
    if keep:
        print(f"model kept: {out}", flush=True)
    else:
        shutil.rmtree(out, ignore_errors=True)
    stages = json.loads(stages_path.read_text()) if stages_path.exists() else {}
    extra = json.loads(extra_path.read_text()) if extra_path.exists() else {}
    return {
        "run": name,
        "ok": code == 0,
        "wall": wall,
        # Client and nanny processes only: the worker processes are not waited for by it.
        "cpu": usage.ru_utime + usage.ru_stime,
        "stages": stages,
        "neighbours": extra.get("neighbours"),
        "client_peak_mb": extra.get("client_peak_mb"),
        "workers_peak_mb": sorted(extra.get("workers_peak_mb", {}).values()),
        "arrays": arrays,
    }


def report(n: int, k: int, workers: int, runs: list[dict[str, Any]], load: str) -> str:
    """The markdown tables of one benchmark run."""
    cores = default_threads()
    lines = [
        f"{n:,} synthetic articles, k = {k}, {cores} cores, load average before: {load}",
        "",
        "| run | wall s | neighbours s | client peak MB | worker peak MB | core-s per pair |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        neighbours = run["neighbours"] or float("nan")
        per_pair = neighbours * cores / (n * n)
        peaks = ", ".join(f"{p:,.0f}" for p in run["workers_peak_mb"]) or "-"
        lines.append(
            f"| {run['run']} | {run['wall']:.1f} | {neighbours:.1f} |"
            f" {run['client_peak_mb'] or 0:,.0f} | {peaks} | {per_pair:.2e} |"
        )
    if len(runs) == 2 and all(r["ok"] for r in runs):
        local, spread = runs
        ratio = spread["wall"] / local["wall"]
        verdict = "pass" if ratio <= OVERHEAD_TARGET else "over"
        same = "identical" if local["arrays"] == spread["arrays"] else "DIFFERENT"
        lines += [
            "",
            f"Overhead of `--workers {workers}`: wall {ratio:.3f}x the in-process build"
            f" (target <= {OVERHEAD_TARGET}: {verdict}); neighbour stage"
            f" {spread['neighbours'] / local['neighbours']:.3f}x; arrays.npz {same}.",
        ]
    names = sorted({stage for run in runs for stage in run["stages"]})
    lines += ["", "| run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for run in runs:
        cells = [f"{run['stages'][s]:.1f}" if s in run["stages"] else "-" for s in names]
        lines.append(f"| {run['run']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def corpus_file(args: argparse.Namespace, work: Path) -> Path:
    """The synthetic corpus (generated once per work directory)."""
    origin = "reuters" if args.reuters else "sample"
    path = work / f"synthetic-{origin}-{args.size}-seed{args.seed}.jsonl"
    if path.exists():
        return path
    if args.reuters:
        source_file = work / "reuters.jsonl"
        if not source_file.exists():
            from scripts.cli import cli

            cli(
                ["import", "reuters", str(args.reuters), "-o", str(source_file)],
                standalone_mode=False,
            )
    else:
        source_file = SAMPLE_ARTICLES
    t0 = time.perf_counter()
    source = read_articles([source_file]).articles
    write_articles_jsonl(synthesise(source, args.size, args.seed), path)
    print(f"generated {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        _child(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuters", type=Path, help="reuters21578 directory (default: sample)")
    parser.add_argument("--size", type=int, default=200_000, help="synthetic corpus size")
    parser.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--only-cluster", action="store_true", help="skip the in-process build")
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    parser.add_argument(
        "--keep-model", action="store_true", help="keep the cluster build's model in --work"
    )
    parser.add_argument(
        "--keep-pools", action="store_true", help="train with --keep-pools (for recs worker)"
    )
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = corpus_file(args, work)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    runs = []
    options = ["--keep-pools"] if args.keep_pools else []
    if not args.only_cluster:
        print("== recs train (in process)", flush=True)
        runs.append(run_train(corpus, work, args.k, options, "in process"))
    print(f"== recs train --workers {args.workers} {' '.join(options)}", flush=True)
    cluster_args = [*options, "--workers", str(args.workers)]
    name = f"--workers {args.workers}"
    runs.append(run_train(corpus, work, args.k, cluster_args, name, keep=args.keep_model))
    text = report(args.size, args.k, args.workers, runs, load)
    print(text)
    print(json.dumps([{k: v for k, v in r.items() if k != "arrays"} for r in runs]))
    if args.out:
        args.out.write_text(text)
    if not all(run["ok"] for run in runs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
