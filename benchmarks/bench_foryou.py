"""Benchmark ``/v1/recommendations`` (20-item random histories) against ``/related``, same run.

Usage::

    python -m benchmarks.bench_foryou --model DIR [--duration 15] [--connections 16] [--workers 2]
        [--threads 1] [--rounds 2] [--rate-duration 10] [--events 5000]
        [--row-cache-size N] [--json OUT]

With benchmarks/harness.py: a private redis-server, the model published to it, one gunicorn of
the API with the repo's ``gunicorn.conf.py``, ``PROMETHEUS_MULTIPROC_DIR`` and the rate limits
off (the benchmark measures the route, not the limiter).
Before measuring, ``--events`` reader events (article ids drawn Zipf-like, so a few are hot)
are recorded, so trending exists and every recommendation pays for the popularity prior.
Per round, alternating: ``wrk`` max throughput on ``/related`` (random article, k=6) and on
``/recommendations`` (a random 20-item history of the corpus, k=6; 2,000 pre-drawn histories).
Then the open-loop fixed-rate generator at half the recommendations max rate, on
``/recommendations`` and (for reference: how much of the tail is the machine) on ``/related``
at the same rate. Server settings are the app defaults otherwise (both endpoints' per-process
caches on) unless ``--row-cache-size`` sets ``RECS_ROW_CACHE_SIZE`` (0: for-you reads Redis on
every request).

Targets: recommendations req/s >= 0.50 x /related req/s; p99 < 20 ms at half that load.
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
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from benchmarks.harness import (
    NO_RATE_LIMITS,
    Processes,
    RedisServer,
    api_env,
    interrupts_as_exceptions,
    publish_model,
    start_gunicorn,
    verdict,
)
from benchmarks.load import RELATED_PATH, WRK_SCRIPT, run_fixed_rate, run_wrk
from service.redis.client import Client
from service.redis.events import HistorySettings, Reader, record_event
from service.redis.versions import current_version

FORYOU_PATH = "/v1/recommendations?k=6&history={}"
HISTORY_LENGTH = 20
HISTORIES = 2000
TARGET_RATIO = 0.50
TARGET_P99_MS = 20.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a markdown table; return 0 if both targets are met."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="A trained model directory.")
    parser.add_argument("--duration", type=int, default=15, help="Seconds per wrk run.")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate-duration", type=float, default=10.0)
    parser.add_argument(
        "--rate-connections", type=int, default=16, help="Sockets of the fixed-rate generator."
    )
    parser.add_argument(
        "--events", type=int, default=5000, help="Trending events recorded before measuring."
    )
    parser.add_argument(
        "--row-cache-size", type=int, help="RECS_ROW_CACHE_SIZE of the server (default: app's)."
    )
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-foryou-") as tmp, interrupts_as_exceptions():
        redis_server = RedisServer(Path(tmp))
        try:
            redis_server.start()
            return _run(args, procs, redis_server, Path(tmp))
        except KeyboardInterrupt:
            print("interrupted: stopping servers", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
            redis_server.stop()


def record_events(client: Client, ids: list[str], count: int) -> None:
    """``count`` view events now, ids drawn Zipf-like (weight 1 / rank) from a shuffled corpus."""
    rng = random.Random(5)
    ranked = rng.sample(ids, len(ids))
    weights = [1.0 / rank for rank in range(1, len(ranked) + 1)]
    settings = HistorySettings()
    now = time.time()
    version = current_version(client)
    assert version is not None, "no model published"
    # Trending counts readers: each event from its own anonymous reader.
    for n, article_id in enumerate(rng.choices(ranked, weights=weights, k=count)):
        record_event(client, version, article_id, Reader("a", f"bench-{n}"), now, settings)


def _run(args: argparse.Namespace, procs: Processes, redis_server: RedisServer, work: Path) -> int:
    client = redis_server.client(timeout=60)
    ids = publish_model(client, args.model)
    rng = random.Random(11)
    histories = [",".join(rng.sample(ids, HISTORY_LENGTH)) for _ in range(HISTORIES)]
    id_file, history_file = work / "ids.txt", work / "histories.txt"
    id_file.write_text("\n".join(ids) + "\n")
    history_file.write_text("\n".join(histories) + "\n")
    script = work / "random.lua"
    script.write_text(WRK_SCRIPT)

    record_events(client, ids, args.events)
    settings: dict[str, str | int] = {
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "warning",
        **NO_RATE_LIMITS,
    }
    if args.row_cache_size is not None:
        settings["ROW_CACHE_SIZE"] = args.row_cache_size
    env = api_env(settings, prometheus_dir=work / "prom")
    with (work / "api.log").open("ab") as log:
        base, _ = start_gunicorn(procs, env, workers=args.workers, threads=args.threads, stdout=log)
    print(
        f"server up: {base}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f};"
        f" {args.events:,} trending events; row cache"
        f" {'default' if args.row_cache_size is None else args.row_cache_size}"
    )
    wrk = partial(run_wrk, threads=args.wrk_threads, connections=args.connections)
    for path, file in ((RELATED_PATH, id_file), (FORYOU_PATH, history_file)):
        wrk(base, path, file, script, seconds=3)  # warm-up

    related, foryou = [], []
    for number in range(1, args.rounds + 1):
        related.append(wrk(base, RELATED_PATH, id_file, script, seconds=args.duration))
        foryou.append(wrk(base, FORYOU_PATH, history_file, script, seconds=args.duration))
        print(
            f"round {number}: /related {related[-1].rps:,.0f} req/s,"
            f" /recommendations {foryou[-1].rps:,.0f} req/s"
        )
    related_rps = statistics.median(r.rps for r in related)
    foryou_rps = statistics.median(r.rps for r in foryou)
    rate = foryou_rps / 2
    fixed = run_fixed_rate(
        base, FORYOU_PATH, histories, rate, args.rate_duration, args.rate_connections
    )
    # The same open loop on /related: how much of the tail is the machine, not for-you.
    reference = run_fixed_rate(
        base, RELATED_PATH, ids, rate, args.rate_duration, args.rate_connections
    )
    ratio = foryou_rps / related_rps
    ok_ratio, ok_p99 = ratio >= TARGET_RATIO, fixed.p99_ms < TARGET_P99_MS
    p50 = statistics.median(r.p50_ms for r in foryou)
    p99 = statistics.median(r.p99_ms for r in foryou)
    print()
    print("| endpoint | req/s (median of rounds) | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    print(
        f"| /related (random id, k=6) | {related_rps:,.0f} |"
        f" {statistics.median(r.p50_ms for r in related):.2f} |"
        f" {statistics.median(r.p99_ms for r in related):.2f} |"
    )
    print(
        f"| /recommendations (20-item history, k=6) | {foryou_rps:,.0f} | {p50:.2f} | {p99:.2f} |"
    )
    print()
    print(
        f"ratio {ratio:.2f} (target >= {TARGET_RATIO}): {verdict(ok_ratio)};"
        f" fixed rate {rate:,.0f} req/s for {args.rate_duration:g} s: p50 {fixed.p50_ms:.2f} ms,"
        f" p99 {fixed.p99_ms:.2f} ms, max {fixed.max_ms:.1f} ms, {fixed.errors} errors"
        f" (target p99 < {TARGET_P99_MS:g} ms): {verdict(ok_p99)}"
    )
    print(
        f"reference, /related at the same fixed rate: p50 {reference.p50_ms:.2f} ms,"
        f" p99 {reference.p99_ms:.2f} ms, max {reference.max_ms:.1f} ms, {reference.errors} errors"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "related": [asdict(r) for r in related],
                    "foryou": [asdict(r) for r in foryou],
                    "fixed_rate": asdict(fixed),
                    "fixed_rate_related": asdict(reference),
                    "ratio": ratio,
                    "load": os.getloadavg()[0],
                    "events": args.events,
                    "row_cache_size": args.row_cache_size,
                },
                indent=2,
            )
        )
    return 0 if ok_ratio and ok_p99 else 1


if __name__ == "__main__":
    sys.exit(main())
