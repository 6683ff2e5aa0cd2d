"""Figures and tables of benchmarks/bench_soak.py: errors and latency per phase of the soak
(before, during and between the Redis restarts) and per step of time."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.load import percentile
from benchmarks.soak_traffic import Sample


def _phase(scheduled: float, windows: list[tuple[float, float]]) -> str:
    for number, (start, end) in enumerate(windows, 1):
        if scheduled < start:
            return "before" if number == 1 else "between"
        if scheduled < end:
            return f"restart {number}"
    return "after"


def _figures(group: list[Sample]) -> dict[str, float]:
    latencies = [s.latency * 1000 for s in group]
    errors = sum(1 for s in group if s.status != 200)
    return {
        "requests": len(group),
        "errors": errors,
        "error_rate": errors / len(group) if group else 0.0,
        "unavailable_503": sum(1 for s in group if s.status == 503),
        "failed_connections": sum(1 for s in group if s.status == 0),
        "stale": sum(1 for s in group if s.stale),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
    }


def summarise(samples: list[Sample], windows: list[tuple[float, float]]) -> dict[str, dict]:
    """Per phase (before, restart 1, between, restart 2, after, all): errors and latency."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(_phase(sample.scheduled, windows), []).append(sample)
    order = ["before", "restart 1", "between", "restart 2", "after"]
    out = {name: _figures(groups[name]) for name in order if name in groups}
    out["all"] = _figures(samples)
    return out


def timeline(samples: list[Sample], step: float) -> list[dict[str, float]]:
    """The same figures per ``step`` seconds of scheduled time."""
    buckets: dict[int, list[Sample]] = {}
    for sample in samples:
        buckets.setdefault(int(sample.scheduled // step), []).append(sample)
    return [{"t_s": n * step, **_figures(buckets[n])} for n in sorted(buckets)]


def print_tables(report: dict[str, Any], step: float) -> None:
    """The phase table, the timeline with RSS and load, and the workers' RSS at start and end."""
    print()
    print(
        "| phase | requests | errors | 503 | conn. errors | stale 200 | p50 ms | p99 ms | max ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, f in report["phases"].items():
        print(
            f"| {name} | {f['requests']:,} | {f['error_rate']:.2%} | {f['unavailable_503']:,}"
            f" | {f['failed_connections']:,} | {f['stale']:,} | {f['p50_ms']:.1f}"
            f" | {f['p99_ms']:.1f} | {f['max_ms']:.0f} |"
        )
    print()
    print("| t (s) | requests | errors | stale 200 | p99 ms | workers' RSS MB | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    gauges = report["gauges"]
    for row in report["timeline"]:
        gauge = gauges.get(str(int(row["t_s"] // step)), {})
        rss, load = gauge.get("rss_mb", float("nan")), gauge.get("load", float("nan"))
        print(
            f"| {row['t_s']:.0f} | {row['requests']:,} | {row['error_rate']:.1%}"
            f" | {row['stale']:,} | {row['p99_ms']:.1f} | {rss:.1f} | {load:.1f} |"
        )
    print()
    rss_start, rss_end = report["rss_start_mb"], report["rss_end_mb"]
    for pid in sorted(rss_start, key=int):
        end = rss_end.get(pid)
        end_text = f"{end:.1f} MB" if end is not None else "gone"
        print(f"worker {pid}: RSS {rss_start[pid]:.1f} MB at start, {end_text} at end")
    print(f"same workers at start and end: {report['same_workers']}")
    print("restarts (s into the soak): " + json.dumps(report["restarts"]))
