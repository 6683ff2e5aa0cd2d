"""The markdown tables of benchmarks/bench_train.py."""

from __future__ import annotations

import argparse
import os
import platform
import sys

from benchmarks.harness import verdict
from benchmarks.train_baselines import THREADS
from benchmarks.train_results import (
    NN_RATIO_TARGET,
    PEAK_MB_TARGET,
    TRAIN_RATIO_TARGET,
    Baselines,
    TrainRun,
)


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
                f" | {base.tfidf_sdt:.1f} | {prefix}{ratio:.2f} {verdict(ratio_ok)}"
                f" | {base.nn_extrapolated:,.0f} | {nn_prefix}{nn_ratio:.1f}"
                f" {verdict(nn_ratio >= NN_RATIO_TARGET and run.ok)}"
                f" | {verdict(run.peak_mb < PEAK_MB_TARGET)} |"
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
                f" | {ratio:.2f} {verdict(ratio <= TRAIN_RATIO_TARGET and run.ok)}"
                f" | {base.nn_extrapolated_cpu:,.0f}"
                f" | {nn_ratio:.1f} {verdict(nn_ratio >= NN_RATIO_TARGET and run.ok)} |"
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
        f"Command: `python -m benchmarks.bench_train {' '.join(sys.argv[1:])}`; "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {THREADS} threads.",
    ]
    return "\n".join(lines) + "\n"
