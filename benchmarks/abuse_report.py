"""Results and summary of benchmarks/bench_abuse.py: one measured phase, the markdown report
judged against the targets, and the raw figures as JSON."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.abuse_flood import FloodResult
from benchmarks.harness import verdict
from benchmarks.load import RateResult

SLOW_US = 5000  # SLOWLOG threshold: commands of >= 5 ms
TARGET_P99_RATIO = 1.10
MIB = 1024 * 1024
MIN_EVENTS = 10_000  # events reaching Redis below which per-million figures are not judged


@dataclass
class Phase:
    """One measured phase: /related at the fixed rate, with or without a flood."""

    name: str
    related: RateResult
    related_status: dict[str, int]
    related_5xx: int
    related_other_errors: int  # non-200 below 500, and answers that never came
    flood: FloodResult | None
    flood_status: dict[str, int]
    events_reaching_redis: int  # flood requests not answered 429 (nor 4xx/5xx before Redis)
    memory_before: int
    memory_after: int
    memory_peak: int
    memory_second_half_growth: int
    dataset_before: int  # used_memory_dataset: used_memory less client buffers, scripts, ...
    dataset_after: int
    keys_before: int
    keys_after: int
    event_keys_after: dict[str, int]
    slowlog: list[dict[str, Any]]
    server_cpu_seconds: float
    redis_cpu_seconds: float
    trouble: list[str] = field(default_factory=list)

    @property
    def growth(self) -> int:
        return self.memory_after - self.memory_before

    @property
    def dataset_growth(self) -> int:
        return self.dataset_after - self.dataset_before

    def per_million(self, count: int, dataset: bool = False) -> float | None:
        growth = self.dataset_growth if dataset else self.growth
        return None if count <= 0 else growth / count * 1e6


def human_bytes(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} GiB"


def report(
    args: argparse.Namespace,
    results: dict[str, list[Phase]],
    rate: float,
    max_rps: float | None,
    load_start: tuple[float, float, float],
) -> bool:
    """Print the summary; return whether every target is met."""
    print()
    print(
        f"gunicorn {args.workers} sync workers x {args.threads} threads; /related at"
        f" {rate:.0f} req/s"
        + (f" (half the measured max {max_rps:.0f})" if max_rps else " (--rate)")
        + f", {args.duration:.0f} s per phase, {args.rate_connections} sockets; flood: wrk"
        f" {args.flood_threads} thread(s) x {args.flood_connections} connections, at most"
        f" {args.max_events:,} requests per phase; load at start {load_start[0]:.2f}"
    )
    all_ok = True
    for limit, phases in results.items():
        baseline = phases[0]
        print()
        print(f"### RECS_EVENTS_RATE_LIMIT={limit}")
        print()
        print(
            "| phase | /related p50 / p99 ms | p99 vs baseline | /related 5xx / other errors"
            " (of sent) | flood req/s (requests) | flood statuses | reached Redis |"
            " Redis used_memory before -> after (growth) | target | result |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for phase in phases:
            ratio = phase.related.p99_ms / baseline.related.p99_ms
            flood = phase.flood
            ok_related = phase.related_5xx == 0 and phase.related_other_errors == 0
            if flood is None:
                ok = ok_related
                target = "no errors"
            else:
                ok = ok_related and ratio <= TARGET_P99_RATIO
                target = f"p99 <= {TARGET_P99_RATIO:.2f} x, no 5xx"
            all_ok &= ok
            print(
                f"| {phase.name} | {phase.related.p50_ms:.1f} / {phase.related.p99_ms:.1f}"
                f" | {ratio:.2f} | {phase.related_5xx} / {phase.related_other_errors}"
                f" ({phase.related.sent}) | "
                + (f"{flood.rps:.0f} ({flood.requests:,})" if flood else "-")
                + f" | {phase.flood_status or '-'} | {phase.events_reaching_redis:,}"
                f" | {human_bytes(phase.memory_before)} -> {human_bytes(phase.memory_after)}"
                f" ({human_bytes(phase.growth)}) | {target} | {verdict(ok)} |"
            )
        print()
        for phase in phases[1:]:
            flood = phase.flood
            requests = flood.requests if flood else 0
            per_request = phase.per_million(requests)
            per_event = phase.per_million(phase.events_reaching_redis)
            per_event_data = phase.per_million(phase.events_reaching_redis, dataset=True)
            flat = phase.memory_second_half_growth <= args.flat_limit
            if phase.name == "junk" and phase.events_reaching_redis >= MIN_EVENTS:
                # Junk must store nothing: no key, and no growth once the phase is under way.
                # The per-million extrapolation of used_memory_dataset is shown, not judged:
                # over a few thousand events it scales tens of KiB of allocator and client
                # noise by a thousand.
                ok_memory = flat and phase.keys_after == phase.keys_before
                target = f"no new key, flat (<= {human_bytes(args.flat_limit)} in 2nd half)"
            else:
                # Fewer events (rate limit on) extrapolate a few bytes of limiter counters to
                # a million: only the flatness is judged then.
                ok_memory = flat
                target = f"bounded: <= {human_bytes(args.flat_limit)} in the 2nd half"
                if phase.name == "junk":
                    target += f" (per-million figure not judged below {MIN_EVENTS:,} events)"
            all_ok &= ok_memory
            print(
                f"- {phase.name} memory: {human_bytes(phase.growth)} over {requests:,} flood"
                f" requests ({phase.events_reaching_redis:,} reached Redis); extrapolated from"
                f" those counts: {_per(per_request)} per million flood requests,"
                f" {_per(per_event)} per million events reaching Redis (used_memory_dataset:"
                f" {human_bytes(phase.dataset_growth)}, {_per(per_event_data)} per million);"
                f" peak"
                f" {human_bytes(phase.memory_peak)}; 2nd-half growth"
                f" {human_bytes(phase.memory_second_half_growth)}; keys {phase.keys_before}"
                f" -> {phase.keys_after}, non-version keys {phase.event_keys_after}."
                f" Target {target}: {verdict(ok_memory)}"
            )
        for phase in phases:
            print(
                f"- {phase.name}: server CPU {phase.server_cpu_seconds:.1f} s (gunicorn + Redis),"
                f" of it Redis {phase.redis_cpu_seconds:.1f} s"
                + (
                    f"; flood client errors {phase.flood.errors}, flood latency p50"
                    f" {phase.flood.p50_ms:.1f} / p99 {phase.flood.p99_ms:.1f} ms"
                    if phase.flood
                    else ""
                )
            )
        slow = [(phase.name, entry) for phase in phases for entry in phase.slowlog]
        all_ok &= not slow
        print(f"- SLOWLOG (>= {SLOW_US / 1000:.0f} ms): {len(slow)} entries: {verdict(not slow)}")
        for name, entry in slow[:20]:
            print(
                f"  - {name}: {entry['command']} {entry['duration_us'] / 1000:.1f} ms"
                f" ({entry['args']})"
            )
        trouble = [(phase.name, line) for phase in phases for line in phase.trouble]
        if trouble:
            print(f"- server log: {len(trouble)} notable lines (first 10):")
            for name, line in trouble[:10]:
                print(f"  - {name}: {line}")
    print()
    print(f"overall: {verdict(all_ok)}; load average at end {os.getloadavg()[0]:.2f}")
    return all_ok


def _per(value: float | None) -> str:
    return "n/a (no events)" if value is None else human_bytes(value)


def as_json(
    args: argparse.Namespace,
    results: dict[str, list[Phase]],
    rate: float,
    max_rps: float | None,
    load_start: tuple[float, float, float],
) -> dict[str, Any]:
    def phase_json(phase: Phase) -> dict[str, Any]:
        data = asdict(phase)
        data["growth"] = phase.growth
        data["dataset_growth"] = phase.dataset_growth
        data["dataset_growth_per_million_events_reaching_redis"] = phase.per_million(
            phase.events_reaching_redis, dataset=True
        )
        data["p99_ratio_vs_baseline"] = None
        data["growth_per_million_flood_requests"] = phase.per_million(
            phase.flood.requests if phase.flood else 0
        )
        data["growth_per_million_events_reaching_redis"] = phase.per_million(
            phase.events_reaching_redis
        )
        return data

    out: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "load_at_start": load_start,
        "related_max_rps": max_rps,
        "rate": rate,
        "configs": {},
    }
    for limit, phases in results.items():
        items = [phase_json(phase) for phase in phases]
        for item, phase in zip(items, phases, strict=True):
            item["p99_ratio_vs_baseline"] = phase.related.p99_ms / phases[0].related.p99_ms
        out["configs"][limit] = items
    return out
