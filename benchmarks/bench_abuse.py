"""Abuse benchmark: ``/related`` at half its max rate while another client floods ``/v1/events``.

Usage::

    python benchmarks/bench_abuse.py --model DIR [--duration 30] [--limits default,off]
        [--flood-connections 8] [--flood-threads 1] [--max-events 2000000] [--json OUT]

Everything runs on 127.0.0.1 and reuses benchmarks/bench_serve.py's machinery. For each event
rate limit in ``--limits`` (``default``: ``RECS_EVENTS_RATE_LIMIT`` unset, i.e. 120/minute per
client address, so most of a flood is answered 429; ``off``: every flood event reaches Redis,
the worst case) a fresh redis-server gets the model published, SLOWLOG set to log commands of
>= 5 ms and reset, and a gunicorn of the API starts (``--workers`` sync workers, the repo's
``gunicorn.conf.py``). The first configuration also measures the maximum ``/related`` req/s
(wrk, random ids, k=6); every fixed-rate run then uses half of it. Phases per configuration:

1. baseline: ``/related`` at the fixed rate (open loop, bench_serve's generator) for
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
reported beside it and the junk target is judged on it. SLOWLOG entries are collected after
each phase.

Targets (issue 12): under a flood, ``/related`` p99 within 10% of the baseline and no 5xx;
Redis memory growth bounded (flat in the second half of a phase) and near zero for junk
(dataset growth < ``--junk-growth-limit`` bytes per million events that reached Redis); no
Redis command of >= 5 ms in SLOWLOG. All child processes stop on exit, errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_serve import (  # noqa: E402
    RELATED_PATH,
    WRK_SCRIPT,
    Processes,
    RateResult,
    interrupts_as_exceptions,
    publish_model,
    run_fixed_rate,
    run_wrk,
    server_cpu_seconds,
    start_gunicorn,
    start_redis,
    verdict,
    wait_http,
)

EVENTS_PATH = "/v1/events"
SLOW_US = 5000  # SLOWLOG threshold: commands of >= 5 ms
TARGET_P99_RATIO = 1.10
MIB = 1024 * 1024
MIN_EVENTS = 10_000  # events reaching Redis below which per-million figures are not judged

# wrk runs this in every flood thread: POST one JSON event per request, junk (unique, well-formed
# ids the live version does not hold) or real (random corpus ids); each thread stops after
# FLOOD_MAX requests. The summary line has the shape of bench_serve's WRK_SCRIPT.
FLOOD_SCRIPT = r"""
local mode = os.getenv("FLOOD_MODE")
local ids = {}
if mode == "real" then
  for line in io.lines(os.getenv("FLOOD_IDS")) do ids[#ids + 1] = line end
end
local path = os.getenv("FLOOD_PATH")
local max_requests = tonumber(os.getenv("FLOOD_MAX"))
local headers = {["Content-Type"] = "application/json"}
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
  counter = 0
end
function request()
  counter = counter + 1
  if counter > max_requests then wrk.thread:stop() end
  local id
  if mode == "real" then
    id = ids[math.random(#ids)]
  else
    id = string.format("junk-%d-%d-%x", seed, counter, math.random(0, 0x7fffffff))
  end
  local body = '{"article_id":"' .. id .. '","type":"view","source":"related"}'
  return wrk.format("POST", path, headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%d,"p99":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
# Error-log lines worth showing: tracebacks, worker timeouts and restarts, errors.
TROUBLE = re.compile(
    r"Traceback|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT|Booting worker|Autorestarting|"
    r"Worker exiting|Exception"
)


@dataclass
class FloodResult:
    """One wrk flood (client side)."""

    mode: str
    requests: int
    seconds: float
    rps: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float


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


class MemorySampler(threading.Thread):
    """``used_memory`` every ``interval`` seconds until stopped (one INFO call each)."""

    def __init__(self, client: redis.Redis, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            try:
                used = int(self.client.info("memory")["used_memory"])
            except redis.RedisError:
                used = -1
            self.samples.append((time.monotonic() - start, used))
            self._stop_event.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop_event.set()
        self.join(5)
        return [s for s in self.samples if s[1] >= 0]


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def used_dataset(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory_dataset"])


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def event_keys(client: redis.Redis) -> dict[str, int]:
    """Keys outside the published versions, counted by their first two ``:`` fields."""
    counts: Counter[str] = Counter()
    for raw in client.scan_iter(count=1000):
        name = raw.decode("utf-8", "replace")
        if name.startswith("rs:v:"):
            continue
        counts[":".join(name.split(":")[:2])] += 1
    return dict(sorted(counts.items()))


def slowlog_entries(client: redis.Redis) -> list[dict[str, Any]]:
    """SLOWLOG entries (all of them, then the log is reset), as plain dicts."""
    entries = client.slowlog_get(1024)
    client.slowlog_reset()
    out = []
    for entry in entries:
        command = entry.get("command", b"")
        if isinstance(command, bytes):
            command = command.decode("utf-8", "replace")
        out.append(
            {
                "duration_us": int(entry["duration"]),
                "command": str(command).split(" ")[0].upper(),
                "args": str(command)[:120],
                "start_time": int(entry["start_time"]),
            }
        )
    return out


def read_log(log: Path, offset: int) -> tuple[str, int]:
    """The log's text from ``offset`` on, and its new end offset."""
    with log.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    return data.decode("utf-8", "replace"), offset + len(data)


def statuses(text: str) -> tuple[Counter[str], Counter[str], list[str]]:
    """(/related statuses, /v1/events statuses, trouble lines) of an access/error-log slice."""
    related: Counter[str] = Counter()
    events: Counter[str] = Counter()
    trouble: list[str] = []
    for line in text.splitlines():
        match = ACCESS_LINE.search(line)
        if match is None:
            if TROUBLE.search(line):
                trouble.append(line.strip()[:300])
            continue
        path = match.group("path")
        if path.startswith("/v1/articles/"):
            related[match.group("status")] += 1
        elif path.startswith(EVENTS_PATH):
            events[match.group("status")] += 1
    return related, events, trouble


def start_flood(
    procs: Processes,
    base: str,
    mode: str,
    ids_file: Path,
    args: argparse.Namespace,
    seconds: float,
    out: Path,
) -> subprocess.Popen[bytes]:
    """wrk posting events as fast as it can, in the background (stopped with ``procs``)."""
    script = out.with_suffix(".lua")
    script.write_text(FLOOD_SCRIPT)
    per_thread = max(1, args.max_events // args.flood_threads)
    env = {
        **os.environ,
        "FLOOD_MODE": mode,
        "FLOOD_IDS": str(ids_file),
        "FLOOD_PATH": EVENTS_PATH,
        "FLOOD_MAX": str(per_thread),
    }
    argv = ["wrk", "-t", str(args.flood_threads), "-c", str(args.flood_connections)]
    argv += ["-d", f"{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(script), base]
    with out.open("wb") as handle:
        return procs.start(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)


def finish_flood(
    process: subprocess.Popen[bytes], mode: str, out: Path, timeout: float
) -> FloodResult:
    """Wait for the flood's wrk and parse its summary."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"flood wrk did not stop; output:\n{out.read_text()}") from None
    text = out.read_text()
    match = re.search(r"^BENCH (\{.*\})$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary in flood wrk output:\n{text}")
    data = json.loads(match.group(1))
    seconds = data["us"] / 1e6
    return FloodResult(
        mode=mode,
        requests=data["requests"],
        seconds=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        errors={k: data[k] for k in ("connect", "read", "write", "status", "timeout")},
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
    )


class Server:
    """One configuration: a private Redis with the model and a gunicorn of the API."""

    def __init__(self, args: argparse.Namespace, work: Path, limit: str) -> None:
        self.args = args
        self.limit = limit
        self.work = work / f"limit-{limit.replace('/', '_')}"
        self.work.mkdir()
        self.procs = Processes()
        self.log = self.work / "gunicorn.log"
        self.log_offset = 0

    def start(self) -> list[str]:
        redis_url, self.client = start_redis(self.procs, self.work)
        ids = publish_model(self.client, self.args.model)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "BENCH_"))}
        env.update(RECS_REDIS_URL=redis_url, RECS_LOG_LEVEL="warning")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.work / "prom")
        if self.limit != "default":
            env["RECS_EVENTS_RATE_LIMIT"] = self.limit
        self.base, process = start_gunicorn(
            self.procs, "service:create_app()", env, self.args, self.log
        )
        wait_http(self.base + "/readyz", process)
        self.pids = [process.pid, int(self.client.info("server")["process_id"])]
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
        sampler = MemorySampler(redis.Redis(connection_pool=self.client.connection_pool))
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


def human_bytes(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} GiB"


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
        "--junk-growth-limit",
        type=float,
        default=1 * MIB,
        help="Junk target: Redis growth per million events that reached Redis, bytes.",
    )
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
        run_wrk(server.base, RELATED_PATH, ids_file, script, args, 2)
        if rate is None:
            measured = run_wrk(server.base, RELATED_PATH, ids_file, script, args, args.max_duration)
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
                assert per_event_data is not None
                ok_memory = flat and per_event_data <= args.junk_growth_limit
                target = (
                    f"dataset < {human_bytes(args.junk_growth_limit)} per M events, flat"
                    f" (<= {human_bytes(args.flat_limit)} in 2nd half)"
                )
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


if __name__ == "__main__":
    sys.exit(main())
