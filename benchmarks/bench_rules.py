"""Benchmark editorial rules: ``/related`` with 1,000 active rules against no rules, one run.

Usage::

    python -m benchmarks.bench_rules --model DIR [--rules 1000] [--duration 15]
        [--connections 16] [--workers 2] [--threads 1] [--rounds 2] [--rate-duration 10]
        [--json OUT]

Everything on loopback: two private redis-servers with the same model published, one with no
rules and one with ``--rules`` active rules of mixed scopes (six in ten scoped to an article,
three to a section, one site-wide; each hides a few ids, some hide a tag or a section, one in
five article or section rules pins an article), and one API gunicorn on each. Per round, both
are measured with ``wrk`` on random article ids (k=6) in turn, so machine noise hits both
alike; then each gets a fixed-rate run at half the no-rules maximum (benchmarks/load.py: open
loop, latency from the scheduled send time).

Targets (issue 14): rules req/s >= 0.90 x no-rules req/s; p99 < 10 ms at half load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Processes,
    RedisServer,
    api_env,
    interrupts_as_exceptions,
    publish_model,
    start_gunicorn,
    verdict,
)
from benchmarks.load import RELATED_PATH, WRK_SCRIPT, WrkResult, run_fixed_rate, run_wrk
from service.redis.client import Client
from service.redis.keys import utc_now
from service.redis.rules import RedisRules

TARGET_RATIO = 0.90
TARGET_P99_MS = 10.0
SPARE_SECTIONS = ["politics", "sport", "business", "culture", "science"]


def make_rules(
    count: int, ids: Sequence[str], sections: Sequence[str], tags: Sequence[str], seed: int = 11
) -> dict[str, dict[str, Any]]:
    """``count`` rule bodies in force now and for a year, mixed scopes, reproducible."""
    rng = random.Random(seed)
    rules: dict[str, dict[str, Any]] = {}
    for n in range(count):
        body: dict[str, Any] = {
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": "2099-01-01T00:00:00Z",
            "note": "benchmark",
        }
        draw = rng.random()
        if draw < 0.6:
            body["scope"] = {"article_id": rng.choice(ids)}
        elif draw < 0.9:
            body["scope"] = {"section": rng.choice(sections)}
        else:
            body["scope"] = {}
        body["hide"] = rng.sample(list(ids), rng.randint(1, 3))
        if tags and rng.random() < 0.2:
            body["hide_tags"] = [rng.choice(tags)]
        if sections and rng.random() < 0.05:
            body["hide_sections"] = [rng.choice(sections)]
        # Pins on article and section boxes: a site-wide pin would sit in every box.
        if body["scope"] and rng.random() < 0.2:
            body["pin"] = [{"id": rng.choice(ids), "position": rng.randint(0, 5)}]
        rules[f"bench-{n:04d}"] = body
    return rules


def load_rules(client: Client, bodies: Mapping[str, Mapping[str, Any]]) -> int:
    """Make ``bodies`` the whole rule set in one Redis (what `recs rules import` does); return
    the rules seq."""
    replaced = RedisRules(client).replace(bodies, by="bench", at=utc_now())
    return replaced.seq


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a markdown table; return 0 if both targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="A trained model directory.")
    parser.add_argument("--rules", type=int, default=1000, help="Active rules (mixed scopes).")
    parser.add_argument("--duration", type=int, default=15, help="Seconds per wrk run (10-30).")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both apps).")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds.")
    parser.add_argument("--rate-duration", type=float, default=10.0)
    parser.add_argument("--rate-threads", type=int, default=16, help="Fixed-rate connections.")
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")

    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp, interrupts_as_exceptions():
        work = Path(tmp)
        (work / "plain").mkdir()
        (work / "ruled").mkdir()
        plain, ruled = RedisServer(work / "plain"), RedisServer(work / "ruled")
        try:
            plain.start()
            ruled.start()
            return _run(args, procs, {"none": plain, "rules": ruled}, work)
        except KeyboardInterrupt:
            print("interrupted: stopping servers", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
            plain.stop()
            ruled.stop()


def _run(
    args: argparse.Namespace, procs: Processes, redis: dict[str, RedisServer], work: Path
) -> int:
    from models.artifact import load_model

    loaded = load_model(args.model)
    sections = sorted({a.section.casefold() for a in loaded.articles if a.section.strip()})
    tags = sorted({t for a in loaded.articles for t in a.tags})
    ids: list[str] = []
    for server in redis.values():
        ids = publish_model(server.client(timeout=60), loaded)
    # A corpus without sections (Reuters) still gets section rules: they cost a lookup each.
    bodies = make_rules(args.rules, ids, sections[:50] or SPARE_SECTIONS, tags[:200])
    seq = load_rules(redis["rules"].client(timeout=60), bodies)
    print(f"{len(bodies)} rules loaded (seq {seq}); {len(sections)} sections in the model")
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    script = work / "random.lua"
    script.write_text(WRK_SCRIPT)

    apps: dict[str, str] = {}
    for name, server in redis.items():
        env = api_env(
            {"REDIS_URL": server.url, "LOG_LEVEL": "warning"}, prometheus_dir=work / f"p-{name}"
        )
        with (work / f"{name}.log").open("ab") as log:
            base, _ = start_gunicorn(
                procs, env, workers=args.workers, threads=args.threads, stdout=log
            )
        apps[name] = base
    print(f"servers up: {apps}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    wrk = partial(run_wrk, threads=args.wrk_threads, connections=args.connections)
    for base in apps.values():  # warm-up: imports, scripts, pools, the rules compiled
        wrk(base, RELATED_PATH, ids_file, script, seconds=3)
    rounds: list[dict[str, WrkResult]] = []
    for number in range(1, args.rounds + 1):
        result = {
            name: wrk(base, RELATED_PATH, ids_file, script, seconds=args.duration)
            for name, base in apps.items()
        }
        rounds.append(result)
        print(
            f"round {number}: no rules {result['none'].rps:.0f} req/s, rules"
            f" {result['rules'].rps:.0f} (ratio {result['rules'].rps / result['none'].rps:.2f});"
            f" errors {result['none'].errors}/{result['rules'].errors};"
            f" load {os.getloadavg()[0]:.1f}"
        )
    rate = statistics.median(r["none"].rps for r in rounds) / 2
    fixed = {
        name: run_fixed_rate(base, RELATED_PATH, ids, rate, args.rate_duration, args.rate_threads)
        for name, base in apps.items()
    }
    ratios = [r["rules"].rps / r["none"].rps for r in rounds]
    ratio = statistics.median(ratios)
    ok_ratio = ratio >= TARGET_RATIO
    ok_p99 = fixed["rules"].p99_ms < TARGET_P99_MS and fixed["rules"].errors == 0

    print()
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, wrk {args.wrk_threads}"
        f" threads x {args.connections} connections, {args.duration} s per run,"
        f" {args.rounds} rounds; random ids over {len(ids)} articles; {len(bodies)} rules"
    )
    print()
    print("| measure | no rules | 1,000 rules | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    each = {n: " / ".join(f"{r[n].rps:.0f}" for r in rounds) for n in apps}
    print(
        f"| /related req/s (median; each round)"
        f" | {statistics.median(r['none'].rps for r in rounds):.0f} ({each['none']})"
        f" | {statistics.median(r['rules'].rps for r in rounds):.0f}"
        f" ({each['rules']}) | {ratio:.2f} | >= {TARGET_RATIO:.2f} | {verdict(ok_ratio)} |"
    )
    print(
        f"| p50 / p99 at {rate:.0f} req/s (half the no-rules max), fixed rate"
        f" | {fixed['none'].p50_ms:.1f} / {fixed['none'].p99_ms:.1f} ms"
        f" | {fixed['rules'].p50_ms:.1f} / {fixed['rules'].p99_ms:.1f} ms"
        f" | | p99 < {TARGET_P99_MS:.0f} ms | {verdict(ok_p99)} |"
    )
    print()
    print(
        f"errors: fixed-rate {fixed['none'].errors} / {fixed['rules'].errors};"
        f" load {os.getloadavg()[0]:.1f}"
    )
    if args.json is not None:
        figures = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "rounds": [{k: vars(v) for k, v in r.items()} for r in rounds],
            "fixed_rate": {k: vars(v) for k, v in fixed.items()},
            "ratio": ratio,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if ok_ratio and ok_p99 else 1


if __name__ == "__main__":
    sys.exit(main())
