"""Load generators: wrk for closed-loop maximum throughput, an open-loop fixed-rate sender for
latency at a given rate, and the percentile every benchmark reports."""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Every wrk script of the benchmarks ends with this: one BENCH line that :func:`wrk_summary` reads.
WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%d,"p99":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
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
"""
WRK_SCRIPT += WRK_DONE
WRK_ERRORS = ("connect", "read", "write", "status", "timeout")
RELATED_PATH = "/v1/articles/{}/related?k=6"  # what the serving benchmarks load


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, NaN when there are none."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def wrk_summary(output: str) -> dict[str, int]:
    """The ``BENCH {...}`` line a wrk script of this package prints when it is done."""
    match = re.search(r"^BENCH (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary in wrk output:\n{output}")
    data: dict[str, int] = json.loads(match.group(1))
    return data


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


def run_wrk(
    base: str,
    path: str,
    ids_file: Path,
    script: Path,
    *,
    seconds: int,
    threads: int,
    connections: int,
) -> WrkResult:
    """Closed-loop maximum throughput with wrk running :data:`WRK_SCRIPT` (saved as ``script``),
    one random id of ``ids_file`` per request in the ``path`` template."""
    # The Lua side formats with %s; paths here are str.format templates.
    env = {**os.environ, "BENCH_IDS": str(ids_file), "BENCH_PATH": path.replace("{}", "%s")}
    argv = ["wrk", "-t", str(threads), "-c", str(connections)]
    argv += ["-d", f"{seconds}s", "--timeout", "5s", "-s", str(script), base]
    # wrk stops itself after -d; the timeout only catches a wedged run.
    out = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    data = wrk_summary(out)
    errors = sum(data[k] for k in WRK_ERRORS)
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
    if not latencies:
        raise RuntimeError(f"fixed-rate run against {base} got no answers")
    millis = [latency * 1000 for latency in latencies]
    return RateResult(
        rate, len(millis), errors, percentile(millis, 50), percentile(millis, 99), max(millis)
    )
