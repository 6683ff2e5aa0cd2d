"""Abuse benchmark: ``/related`` at half its max rate while another client floods ``/v1/events``.

Usage::

    python -m benchmarks.bench_abuse --model DIR [--duration 30] [--limits default,off]
        [--flood-connections 8] [--flood-threads 1] [--max-events 2000000] [--json OUT]

Everything runs on 127.0.0.1, started by benchmarks/harness.py. For each event
rate limit in ``--limits`` (``default``: ``RECS_EVENTS_RATE_LIMIT`` unset, i.e. 120/minute per
client address, so most of a flood is answered 429; ``off``: every flood event reaches Redis,
the worst case) a fresh redis-server gets the model published, SLOWLOG set to log commands of
>= 5 ms and reset, and a gunicorn of the API starts (``--workers`` sync workers, the repo's
``gunicorn.conf.py``). The first configuration also measures the maximum ``/related`` req/s
(wrk, random ids, k=6); every fixed-rate run then uses half of it. Phases per configuration:

1. baseline: ``/related`` at the fixed rate (open loop, benchmarks.load's generator) for
   ``--duration`` seconds, no flood;
2. flood A, junk: the same, while ``wrk`` posts events for unique random (well-formed) article
   ids as fast as it can over ``--flood-connections`` connections;
3. flood B, real: the same with ids drawn at random from the corpus, over and over.

Each flood is bounded by ``--duration`` and by ``--max-events`` requests. Status codes come
from gunicorn's access log (slice of the log per phase), so 5xx are told from other errors;
Redis ``used_memory`` is read before and after each phase (and sampled every 0.5 s during it),
and the growth is extrapolated to a million flood requests and a million events that reached
Redis (i.e. not answered 429). ``used_memory`` also moves with client buffers and the script
cache (a short run extrapolates those to a million events too), so ``used_memory_dataset`` is
reported beside it. SLOWLOG entries are collected after each phase.

Targets (issue 12): under a flood, ``/related`` p99 within 10% of the baseline and no 5xx;
Redis memory growth bounded (flat in the second half of a phase) and nothing stored for junk
(not one new key); no
Redis command of >= 5 ms in SLOWLOG. All child processes stop on exit, errors and Ctrl-C.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from benchmarks.abuse_flood import EVENTS_PATH, finish_flood, read_log, start_flood, statuses
from benchmarks.abuse_redis import (
    MemorySampler,
    event_keys,
    redis_cpu,
    slowlog_entries,
    used_dataset,
    used_memory,
)
from benchmarks.abuse_report import SLOW_US, Phase, as_json, human_bytes, report
from benchmarks.harness import (
    Processes,
    RedisServer,
    api_env,
    interrupts_as_exceptions,
    publish_model,
    server_cpu_seconds,
    start_gunicorn,
)
from benchmarks.load import RELATED_PATH, WRK_SCRIPT, run_fixed_rate, run_wrk


class Server:
    """One configuration: a private Redis with the model and a gunicorn of the API."""

    def __init__(self, args: argparse.Namespace, work: Path, limit: str) -> None:
        self.args = args
        self.limit = limit
        self.work = work / f"limit-{limit.replace('/', '_')}"
        self.work.mkdir()
        self.procs = Processes()
        self.redis = RedisServer(self.work)
        self.log = self.work / "gunicorn.log"
        self.log_offset = 0

    def start(self) -> list[str]:
        self.redis.start()
        self.client = self.redis.client(timeout=60)
        ids = publish_model(self.client, self.args.model)
        # The events limit is what this benchmark is about: as --limits says ('default':
        # unset). /related, the other route it loads, has no limit.
        limits = {} if self.limit == "default" else {"EVENTS_RATE_LIMIT": self.limit}
        settings = {"REDIS_URL": self.redis.url, "LOG_LEVEL": "warning", **limits}
        env = api_env(settings, prometheus_dir=self.work / "prom")
        with self.log.open("ab") as log:
            self.base, process = start_gunicorn(
                self.procs, env, workers=self.args.workers, threads=self.args.threads, stdout=log
            )
        self.pids = [process.pid, self.redis.pid]
        # A few junk events first, so the one-time loads (the event and limiter Lua scripts in
        # Redis' script cache) are not counted as growth of the first flood phase.
        for number in range(8):
            request = urllib.request.Request(
                self.base + EVENTS_PATH,
                data=json.dumps({"article_id": f"warm-up-{number}"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise RuntimeError(f"warm-up event answered {exc.code}") from None
        self.client.config_set("slowlog-log-slower-than", SLOW_US)
        self.client.config_set("slowlog-max-len", 1024)
        self.client.slowlog_reset()
        return ids

    def phase(
        self, name: str, ids: list[str], ids_file: Path, rate: float, flood: str | None
    ) -> Phase:
        args = self.args
        _, self.log_offset = read_log(self.log, self.log_offset)  # skip what came before
        slowlog_entries(self.client)  # reset: entries belong to the phase they happen in
        keys_before = int(self.client.dbsize())
        memory_before = used_memory(self.client)
        dataset_before = used_dataset(self.client)
        cpu_before = server_cpu_seconds(self.pids)
        redis_before = redis_cpu(self.client)
        sampler = MemorySampler(self.redis.client())
        sampler.start()
        process = None
        out = self.work / f"{name}.wrk.txt"
        if flood is not None:
            # The flood starts first and ends after the fixed-rate run has sent its last request.
            process = start_flood(
                self.procs, self.base, flood, ids_file, args, args.duration + 1.5, out
            )
            time.sleep(0.5)
        related = run_fixed_rate(
            self.base, RELATED_PATH, ids, rate, args.duration, args.rate_connections
        )
        flood_result = None
        if process is not None:
            flood_result = finish_flood(process, flood or "", out, args.duration + 60)
        time.sleep(0.3)  # let the last access-log lines land
        samples = sampler.stop()
        memory_after = used_memory(self.client)
        dataset_after = used_dataset(self.client)
        cpu_used = server_cpu_seconds(self.pids) - cpu_before
        redis_used = redis_cpu(self.client) - redis_before
        slowlog = slowlog_entries(self.client)
        text, self.log_offset = read_log(self.log, self.log_offset)
        related_status, flood_status, trouble = statuses(text)
        half = samples[-1][0] / 2 if samples else 0.0
        middle = [used for moment, used in samples if moment >= half]
        second_half = (memory_after - middle[0]) if middle else 0
        not_200 = sum(v for k, v in related_status.items() if k != "200")
        fivexx = sum(v for k, v in related_status.items() if k.startswith("5"))
        # The generator's errors are its non-200 answers plus requests never answered (closed,
        # refused, past its hard stop): the latter show up only on the client side.
        unanswered = max(0, related.errors - not_200)
        # An event reaches the Lua script unless it was refused before (429, 400, 415, 5xx...);
        # 202 (valid id) and 404 (unknown id: checked in Redis, nothing stored) both ran it.
        reaching = flood_status.get("202", 0) + flood_status.get("404", 0)
        return Phase(
            name=name,
            related=related,
            related_status=dict(sorted(related_status.items())),
            related_5xx=fivexx,
            related_other_errors=not_200 - fivexx + unanswered,
            flood=flood_result,
            flood_status=dict(sorted(flood_status.items())),
            events_reaching_redis=reaching,
            memory_before=memory_before,
            memory_after=memory_after,
            memory_peak=max([memory_after, *(used for _, used in samples)]),
            memory_second_half_growth=second_half,
            dataset_before=dataset_before,
            dataset_after=dataset_after,
            keys_before=keys_before,
            keys_after=int(self.client.dbsize()),
            event_keys_after=event_keys(self.client),
            slowlog=slowlog,
            server_cpu_seconds=cpu_used,
            redis_cpu_seconds=redis_used,
            trouble=trouble,
        )

    def stop(self) -> None:
        self.procs.stop_all()
        self.redis.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a summary; return 0 if every target is met."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="A trained model directory.")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="Seconds per phase (baseline and floods)."
    )
    parser.add_argument(
        "--limits",
        default="default,off",
        help="Comma-separated RECS_EVENTS_RATE_LIMIT values, one server start each"
        " ('default': unset, 120/minute; 'off': every event reaches Redis).",
    )
    parser.add_argument("--max-duration", type=int, default=10, help="Seconds of the wrk max run.")
    parser.add_argument(
        "--rate",
        type=float,
        help="Fixed /related rate, req/s (default: half the measured max).",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (max run).")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rate-connections", type=int, default=16, help="Fixed-rate sockets.")
    parser.add_argument("--flood-connections", type=int, default=8)
    parser.add_argument("--flood-threads", type=int, default=1)
    parser.add_argument(
        "--max-events", type=int, default=2_000_000, help="Flood requests per phase, at most."
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers.")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker.")
    parser.add_argument(
        "--flat-limit",
        type=float,
        default=256 * 1024,
        help="'Bounded' target: growth over the second half of a flood phase, bytes.",
    )
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    if not 1 <= args.duration <= 600 or not 1 <= args.max_duration <= 120:
        parser.error("--duration must be 1-600 s and --max-duration 1-120 s")
    if args.max_events < 1 or args.flood_connections < args.flood_threads:
        parser.error("--max-events must be >= 1 and --flood-connections >= --flood-threads")
    limits = [part.strip() for part in args.limits.split(",") if part.strip()]
    if not limits:
        parser.error("--limits is empty")

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp, interrupts_as_exceptions():
        try:
            return _run(args, Path(tmp), limits, servers)
        except KeyboardInterrupt:
            print("interrupted: stopping servers", file=sys.stderr)
            return 130
        finally:
            for server in servers:
                server.stop()


def _run(args: argparse.Namespace, work: Path, limits: list[str], servers: list[Server]) -> int:
    load_start = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average at start {load_start[0]:.2f} / {load_start[1]:.2f}"
        f" / {load_start[2]:.2f}"
    )
    script = work / "random.lua"
    script.write_text(WRK_SCRIPT)
    wrk = partial(run_wrk, threads=args.wrk_threads, connections=args.connections)
    ids_file = work / "ids.txt"
    rate: float | None = args.rate
    max_rps: float | None = None
    results: dict[str, list[Phase]] = {}
    for limit in limits:
        server = Server(args, work, limit)
        servers.append(server)
        ids = server.start()
        ids_file.write_text("\n".join(ids) + "\n")
        print(f"[limit {limit}] API at {server.base}; warming up")
        wrk(server.base, RELATED_PATH, ids_file, script, seconds=2)
        if rate is None:
            measured = wrk(server.base, RELATED_PATH, ids_file, script, seconds=args.max_duration)
            max_rps = measured.rps
            rate = max_rps / 2
            print(
                f"[limit {limit}] /related max {max_rps:.0f} req/s (wrk, {args.connections}"
                f" connections, errors {measured.errors}); fixed rate {rate:.0f} req/s"
            )
        phases = []
        for name, flood in (("baseline", None), ("junk", "junk"), ("real", "real")):
            phase = server.phase(name, ids, ids_file, rate, flood)
            phases.append(phase)
            flood_text = ""
            if phase.flood is not None:
                flood_text = (
                    f"; flood {phase.flood.requests} req at {phase.flood.rps:.0f} req/s,"
                    f" statuses {phase.flood_status}"
                )
            print(
                f"[limit {limit}] {name}: /related p50 {phase.related.p50_ms:.1f} ms, p99"
                f" {phase.related.p99_ms:.1f} ms, statuses {phase.related_status}{flood_text};"
                f" redis {human_bytes(phase.growth)}; load {os.getloadavg()[0]:.1f}"
            )
        results[limit] = phases
        server.stop()
    assert rate is not None
    ok = report(args, results, rate, max_rps, load_start)
    if args.json is not None:
        args.json.write_text(
            json.dumps(as_json(args, results, rate, max_rps, load_start), indent=2)
        )
        print(f"\nraw figures: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
