"""Benchmark serving: ``/related`` under gunicorn against a bare Flask + one Redis GET endpoint.

Usage::

    python benchmarks/bench_serve.py --model DIR [--duration 15] [--connections 16] [--workers 2]
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
3. fixed rate at half the bare endpoint's max: Debian has no wrk2, so a small open-loop Python
   generator (one thread, a selector over ``--rate-threads`` sockets) sends requests on a
   fixed schedule and measures latency from the scheduled send time (no coordinated omission), for
   ``--rate-duration`` seconds, against the API and the bare endpoint.

Targets: API req/s >= 0.70 x bare req/s; API p99 < 10 ms at half the bare max rate. All child
processes are stopped on exit, errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PAYLOAD_KEY = "bench:payload"
RELATED_PATH = "/v1/articles/{}/related?k=6"
BARE_PATH = "/bare/{}"
HOT_IDS = 64  # well inside RESPONSE_CACHE_SIZE, so every hot request is a cache hit
TARGET_RATIO = 0.70
TARGET_P99_MS = 10.0

# wrk runs this in every thread: random ids from a file, summary as one JSON line at the end.
WRK_SCRIPT = r"""
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
local path = os.getenv("BENCH_PATH")
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  return wrk.format("GET", string.format(path, ids[math.random(#ids)]))
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


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Processes:
    """Child processes, each in its own session, all stopped by :meth:`stop_all`."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
        """Start a child in a new session (so its own children can be stopped with it)."""
        process = subprocess.Popen(list(argv), start_new_session=True, **options)
        self._children.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM each child's process group, then SIGKILL what is left after a grace time."""
        for process in self._children:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self._children:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self._children.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the child's own session: pgid == its pid
    except ProcessLookupError:
        pass


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``url`` answers 200 (or fail if the server process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_redis(procs: Processes, work: Path) -> tuple[str, redis.Redis]:
    """A private redis-server without persistence; returns its URL and a client."""
    port = free_port()
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    procs.start(
        [executable, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        + ["--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host=HOST, port=port)
    for _ in range(200):
        try:
            client.ping()
            return f"redis://{HOST}:{port}/0", client
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def publish_model(client: redis.Redis, model_dir: Path) -> list[str]:
    """Publish ``model_dir``; return its article ids."""
    from models.artifact import load_model
    from service.redis.publish import publish

    loaded = load_model(model_dir)
    result = publish(client, loaded)
    print(f"published {result.version}: {result.articles} articles in {result.seconds:.1f} s")
    return [article.id for article in loaded.articles]


def store_payload(redis_url: str, client: redis.Redis, ids: Sequence[str]) -> int:
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


def start_gunicorn(
    procs: Processes, app: str, env: dict[str, str], args: argparse.Namespace, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    """gunicorn with the repo's gunicorn.conf.py on a free loopback port."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")]
    argv += ["--bind", f"{HOST}:{port}", "--workers", str(args.workers)]
    argv += ["--threads", str(args.threads), app]
    with log.open("ab") as out:
        process = procs.start(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return f"http://{HOST}:{port}", process


@dataclass
class WrkResult:
    """One wrk run."""

    rps: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    # Server CPU (gunicorn master and workers, redis-server) per request, microseconds.
    cpu_us: float = float("nan")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _family(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn's workers), from /proc."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(child) for child in task.read_text().split()]
    return out


def server_cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` and their children (Linux /proc)."""
    total = 0
    for pid in {p for root in pids for p in _family(root)}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a recycled worker: its CPU is lost to the count, rarely
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def run_wrk(
    base: str, path: str, ids_file: Path, script: Path, args: argparse.Namespace, seconds: int
) -> WrkResult:
    """Closed-loop maximum throughput with wrk."""
    # The Lua side formats with %s; paths here are str.format templates.
    env = {**os.environ, "BENCH_IDS": str(ids_file), "BENCH_PATH": path.replace("{}", "%s")}
    argv = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections)]
    argv += ["-d", f"{seconds}s", "--timeout", "5s", "-s", str(script), base]
    # wrk stops itself after -d; the timeout only catches a wedged run.
    out = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    match = re.search(r"^BENCH (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary in wrk output:\n{out}")
    data = json.loads(match.group(1))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors:
        print(f"wrk errors against {base}{path}: {data}", file=sys.stderr)
    return WrkResult(
        rps=data["requests"] / (data["us"] / 1e6),
        requests=data["requests"],
        errors=errors,
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
    )


@dataclass
class RateResult:
    """One fixed-rate run."""

    rate: float
    sent: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def run_fixed_rate(
    base: str, path: str, ids: Sequence[str], rate: float, seconds: float, connections: int
) -> RateResult:
    """Open loop: request i is due at start + i/rate; latency counts from that due time.

    One thread drives up to ``connections`` sockets through a selector, with raw HTTP/1.1 bytes
    and a minimal response parser: an earlier version (a thread per connection on
    ``http.client``) spent about half a core on the GIL and header parsing at 1,000 req/s on
    a 2-core box, and its own queueing showed up as server latency. A request due while every
    connection is busy waits for one, its wait counted (no coordinated omission).
    """
    host, port_text = base.removeprefix("http://").split(":")
    address = (host, int(port_text))
    total = int(rate * seconds)
    rng = random.Random(0)
    selector = selectors.DefaultSelector()
    free: deque[socket.socket] = deque()
    busy: dict[socket.socket, tuple[float, bytearray]] = {}
    waiting: deque[float] = deque()
    latencies: list[float] = []
    errors = 0

    def connect() -> socket.socket:
        sock = socket.create_connection(address, timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    def retire(sock: socket.socket) -> None:
        selector.unregister(sock)
        sock.close()
        free.append(connect())

    for _ in range(max(1, connections)):
        free.append(connect())
    start = time.perf_counter() + 0.2
    # Bounded: answers still missing this long after the last request was due are errors.
    hard_stop = start + seconds + 10
    issued = 0
    while True:
        now = time.perf_counter()
        while issued < total and start + issued / rate <= now:
            waiting.append(start + issued / rate)
            issued += 1
        while waiting and free:
            sock = free.popleft()
            due = waiting.popleft()
            request = f"GET {path.format(rng.choice(ids))} HTTP/1.1\r\nHost: {host}\r\n\r\n"
            try:
                sock.send(request.encode())
            except OSError:
                errors += 1
                sock.close()
                free.append(connect())
                continue
            busy[sock] = (due, bytearray())
            selector.register(sock, selectors.EVENT_READ)
        if issued >= total and not waiting and not busy:
            break
        if now > hard_stop:
            errors += len(busy) + len(waiting) + (total - issued)
            break
        timeout = 0.05 if issued >= total else max(0.0, min(0.05, start + issued / rate - now))
        for key, _ in selector.select(timeout):
            sock = key.fileobj  # type: ignore[assignment]
            due, buffer = busy[sock]
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:  # closed before a whole answer: an error, reconnect
                errors += 1
                del busy[sock]
                retire(sock)
                continue
            buffer += chunk
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = bytes(buffer[:head_end]).decode("latin-1").lower()
            length = re.search(r"\r\ncontent-length: *(\d+)", head)
            if length is None or len(buffer) < head_end + 4 + int(length.group(1)):
                continue  # no length (never sent by these apps) waits for the hard stop
            latencies.append(time.perf_counter() - due)
            if not head.startswith("http/1.1 200"):
                errors += 1
            del busy[sock]
            # gunicorn's sync workers close every connection after its answer.
            if "\r\nconnection: close" in head:
                retire(sock)
            else:
                selector.unregister(sock)
                free.append(sock)
    for sock in [*free, *busy]:
        sock.close()
    selector.close()
    latencies.sort()
    if not latencies:
        raise RuntimeError(f"fixed-rate run against {base} got no answers")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return RateResult(rate, len(latencies), errors, pct(0.50), pct(0.99), latencies[-1] * 1000)


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt, so the cleanup in ``finally`` always runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


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
        try:
            return _run(args, procs, work)
        except KeyboardInterrupt:
            print("interrupted: stopping servers", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()


def _run(args: argparse.Namespace, procs: Processes, work: Path) -> int:
    redis_url, client = start_redis(procs, work)
    ids = publish_model(client, args.model)
    payload_size = store_payload(redis_url, client, ids)
    print(f"bare payload: {payload_size} bytes (median /related answer, k=6)")
    all_ids, hot_ids = work / "ids.txt", work / "hot.txt"
    all_ids.write_text("\n".join(ids) + "\n")
    hot = random.Random(3).sample(ids, HOT_IDS)
    hot_ids.write_text("\n".join(hot) + "\n")
    script = work / "random.lua"
    script.write_text(WRK_SCRIPT)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "BENCH_"))}
    env.update(RECS_REDIS_URL=redis_url, RECS_LOG_LEVEL="warning")
    env.update(BENCH_REDIS_URL=redis_url, BENCH_PAYLOAD_KEY=PAYLOAD_KEY)
    apps = {}
    servers: dict[str, list[int]] = {}
    redis_pid = int(client.info("server")["process_id"])
    for name, target, ready in (
        ("api", "service:create_app()", "/readyz"),
        ("bare", "benchmarks.bench_bare_app:create_app()", BARE_PATH.format(ids[0])),
    ):
        app_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(work / f"prom-{name}")}
        base, process = start_gunicorn(procs, target, app_env, args, work / f"{name}.log")
        wait_http(base + ready, process)
        apps[name] = base
        servers[name] = [process.pid, redis_pid]
    print(f"servers up: {apps}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    # Warm-up: imports, Lua script loading, connection pools in every worker.
    for name, path in (("bare", BARE_PATH), ("api", RELATED_PATH)):
        run_wrk(apps[name], path, all_ids, script, args, 3)

    def measured(name: str, path: str, ids_file: Path) -> WrkResult:
        # CPU per request as well as req/s: on a shared box the other load moves req/s a lot
        # between runs, while the server's own CPU cost of a request stays put.
        before = server_cpu_seconds(servers[name])
        result = run_wrk(apps[name], path, ids_file, script, args, args.duration)
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
