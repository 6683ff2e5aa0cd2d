"""Benchmark serving: ``/related`` under gunicorn against a bare Flask + one Redis GET endpoint.

Usage::

    python -m benchmarks.bench_serve --model DIR [--duration 15] [--connections 16] [--workers 2]
        [--threads 1] [--rounds 2] [--rate-duration 10] [--json OUT]

One run, everything on loopback: a private redis-server on a free port (no persistence), the
model published to it, then two gunicorns with the repo's ``gunicorn.conf.py`` and the same
workers/threads: (a) the API (``service:create_app()``) and (b) ``benchmarks/bench_bare_app.py``,
whose one endpoint GETs a pre-stored JSON the size of a median ``/related`` answer and returns
it. Both run with ``PROMETHEUS_MULTIPROC_DIR`` set, as in the container image.

Phases, per round (bare and API alternate, so machine noise hits both alike):

1. max throughput with ``wrk`` (closed loop, ``--connections``), every request for a RANDOM
   article id of the whole corpus, k=6 — with the per-process answer cache this is mostly the
   uncached path (the headline figure);
2. the same on a small hot set of ids (answers served from the cache): labelled "hot";
3. fixed rate at half the bare endpoint's max: Debian has no wrk2, so the open-loop generator
   of benchmarks/load.py (one thread, a selector over ``--rate-threads`` sockets) sends
   requests on a fixed schedule and measures latency from the scheduled send time (no
   coordinated omission), for ``--rate-duration`` seconds, against the API and the bare
   endpoint.

Targets: API req/s >= 0.70 x bare req/s; API p99 < 10 ms at half the bare max rate. All child
processes are stopped on exit, errors and Ctrl-C.
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
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from benchmarks.harness import (
    Processes,
    RedisServer,
    api_env,
    interrupts_as_exceptions,
    publish_model,
    server_cpu_seconds,
    start_gunicorn,
    verdict,
)
from benchmarks.load import RELATED_PATH, WRK_SCRIPT, WrkResult, run_fixed_rate, run_wrk
from service.redis.client import Client

PAYLOAD_KEY = "bench:payload"
BARE_PATH = "/bare/{}"
HOT_IDS = 64  # well inside RESPONSE_CACHE_SIZE, so every hot request is a cache hit
TARGET_RATIO = 0.70
TARGET_P99_MS = 10.0


def store_payload(redis_url: str, client: Client, ids: Sequence[str]) -> int:
    """Store the median-sized /related answer (k=6) of 301 random ids as the bare payload."""
    from service import create_app

    app = create_app({"REDIS_URL": redis_url, "RESPONSE_CACHE_SIZE": 0})
    test = app.test_client()
    bodies = sorted(
        (test.get(RELATED_PATH.format(i)).data for i in random.Random(7).sample(ids, 301)),
        key=len,
    )
    payload = bodies[len(bodies) // 2]
    client.set(PAYLOAD_KEY, payload)
    return len(payload)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a markdown table; return 0 if both targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="A trained model directory.")
    parser.add_argument("--duration", type=int, default=15, help="Seconds per wrk run (10-30).")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both apps).")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating bare/API rounds.")
    parser.add_argument("--rate-duration", type=float, default=10.0)
    parser.add_argument(
        "--rate-threads",
        type=int,
        default=16,
        help="Fixed-rate connections (one thread drives them).",
    )
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")

    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, interrupts_as_exceptions():
        work = Path(tmp)
        redis_server = RedisServer(work)
        try:
            redis_server.start()
            return _run(args, procs, redis_server, work)
        except KeyboardInterrupt:
            print("interrupted: stopping servers", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
            redis_server.stop()


def _run(args: argparse.Namespace, procs: Processes, redis_server: RedisServer, work: Path) -> int:
    redis_url, client = redis_server.url, redis_server.client(timeout=60)
    ids = publish_model(client, args.model)
    payload_size = store_payload(redis_url, client, ids)
    print(f"bare payload: {payload_size} bytes (median /related answer, k=6)")
    all_ids, hot_ids = work / "ids.txt", work / "hot.txt"
    all_ids.write_text("\n".join(ids) + "\n")
    hot = random.Random(3).sample(ids, HOT_IDS)
    hot_ids.write_text("\n".join(hot) + "\n")
    script = work / "random.lua"
    script.write_text(WRK_SCRIPT)

    apps = {}
    servers: dict[str, list[int]] = {}
    for name, target, ready in (
        ("api", "service:create_app()", "/readyz"),
        ("bare", "benchmarks.bench_bare_app:create_app()", BARE_PATH.format(ids[0])),
    ):
        settings = {"REDIS_URL": redis_url, "LOG_LEVEL": "warning"}
        env = api_env(settings, prometheus_dir=work / f"prom-{name}")
        env.update(BENCH_REDIS_URL=redis_url, BENCH_PAYLOAD_KEY=PAYLOAD_KEY)
        with (work / f"{name}.log").open("ab") as log:
            base, process = start_gunicorn(
                procs,
                env,
                app=target,
                workers=args.workers,
                threads=args.threads,
                stdout=log,
                ready=ready,
            )
        apps[name] = base
        servers[name] = [process.pid, redis_server.pid]
    print(f"servers up: {apps}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    wrk = partial(run_wrk, threads=args.wrk_threads, connections=args.connections)
    # Warm-up: imports, Lua script loading, connection pools in every worker.
    for name, path in (("bare", BARE_PATH), ("api", RELATED_PATH)):
        wrk(apps[name], path, all_ids, script, seconds=3)

    def measured(name: str, path: str, ids_file: Path) -> WrkResult:
        # CPU per request as well as req/s: on a shared box the other load moves req/s a lot
        # between runs, while the server's own CPU cost of a request stays put.
        before = server_cpu_seconds(servers[name])
        result = wrk(apps[name], path, ids_file, script, seconds=args.duration)
        used = server_cpu_seconds(servers[name]) - before
        result.cpu_us = used / max(1, result.requests) * 1e6
        return result

    rounds: list[dict[str, WrkResult]] = []
    for number in range(1, args.rounds + 1):
        result = {
            "bare": measured("bare", BARE_PATH, all_ids),
            "api": measured("api", RELATED_PATH, all_ids),
            "api_hot": measured("api", RELATED_PATH, hot_ids),
        }
        rounds.append(result)
        print(
            f"round {number}: bare {result['bare'].rps:.0f} req/s, api {result['api'].rps:.0f}"
            f" (ratio {result['api'].rps / result['bare'].rps:.2f}), api hot"
            f" {result['api_hot'].rps:.0f}; errors"
            f" {'/'.join(str(w.errors) for w in result.values())}; load {os.getloadavg()[0]:.1f}"
        )

    bare_rps = statistics.median(r["bare"].rps for r in rounds)
    rate = bare_rps / 2
    fixed = {
        "api": run_fixed_rate(
            apps["api"], RELATED_PATH, ids, rate, args.rate_duration, args.rate_threads
        ),
        "bare": run_fixed_rate(
            apps["bare"], BARE_PATH, ids, rate, args.rate_duration, args.rate_threads
        ),
    }
    ratios = [r["api"].rps / r["bare"].rps for r in rounds]
    hot_ratios = [r["api_hot"].rps / r["bare"].rps for r in rounds]
    ratio = statistics.median(ratios)
    ok_ratio = ratio >= TARGET_RATIO
    ok_p99 = fixed["api"].p99_ms < TARGET_P99_MS and fixed["api"].errors == 0
    errors = sum(w.errors for r in rounds for w in r.values())

    def spread(values: Sequence[float], fmt: str) -> str:
        return " / ".join(format(v, fmt) for v in values)

    print()
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, wrk {args.wrk_threads}"
        f" threads x {args.connections} connections, {args.duration} s per run,"
        f" {args.rounds} rounds; random ids over {len(ids)} articles; payload {payload_size} B"
    )
    print()
    print("| measure | bare Flask + 1 GET | /related (random ids) | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    print(
        f"| req/s (median of rounds; each round) | {bare_rps:.0f}"
        f" ({spread([r['bare'].rps for r in rounds], '.0f')})"
        f" | {statistics.median(r['api'].rps for r in rounds):.0f}"
        f" ({spread([r['api'].rps for r in rounds], '.0f')})"
        f" | {ratio:.2f} ({spread(ratios, '.2f')}) | >= {TARGET_RATIO:.2f}"
        f" | {verdict(ok_ratio)} |"
    )
    cpu_bare = statistics.median(r["bare"].cpu_us for r in rounds)
    cpu_api = statistics.median(r["api"].cpu_us for r in rounds)
    print(
        f"| server CPU per request, us (workers + Redis; median, each round) | {cpu_bare:.0f}"
        f" ({spread([r['bare'].cpu_us for r in rounds], '.0f')}) | {cpu_api:.0f}"
        f" ({spread([r['api'].cpu_us for r in rounds], '.0f')}) | {cpu_bare / cpu_api:.2f}"
        " (bare / api) | info | |"
    )
    print(
        f"| req/s, hot ids ({HOT_IDS}, answer cache) | | "
        f"{statistics.median(r['api_hot'].rps for r in rounds):.0f}"
        f" | {statistics.median(hot_ratios):.2f} ({spread(hot_ratios, '.2f')}) | info | |"
    )
    print(
        f"| p50 / p99 at {rate:.0f} req/s (half bare max), fixed rate"
        f" | {fixed['bare'].p50_ms:.1f} / {fixed['bare'].p99_ms:.1f} ms"
        f" | {fixed['api'].p50_ms:.1f} / {fixed['api'].p99_ms:.1f} ms"
        f" | | p99 < {TARGET_P99_MS:.0f} ms | {verdict(ok_p99)} |"
    )
    print(
        f"| wrk p50 / p99 at max load (round 1) | {rounds[0]['bare'].p50_ms:.1f} /"
        f" {rounds[0]['bare'].p99_ms:.1f} ms | {rounds[0]['api'].p50_ms:.1f} /"
        f" {rounds[0]['api'].p99_ms:.1f} ms | | info | |"
    )
    print()
    print(
        f"errors: wrk {errors}, fixed-rate api {fixed['api'].errors} /"
        f" bare {fixed['bare'].errors}; fixed-rate sent api {fixed['api'].sent}"
        f" / bare {fixed['bare'].sent}, max latency api {fixed['api'].max_ms:.1f} ms;"
        f" load {os.getloadavg()[0]:.1f}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "payload_bytes": payload_size,
                    "rounds": [{k: vars(v) for k, v in r.items()} for r in rounds],
                    "fixed_rate": {k: vars(v) for k, v in fixed.items()},
                    "ratio": ratio,
                },
                indent=2,
            )
        )
    return 0 if ok_ratio and ok_p99 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
