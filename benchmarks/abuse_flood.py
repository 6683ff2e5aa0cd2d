"""The flood of benchmarks/bench_abuse.py: wrk posting events as fast as it can, and what the
server's log says about each phase (statuses per route, notable error lines)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Processes
from benchmarks.load import WRK_DONE, WRK_ERRORS, wrk_summary

EVENTS_PATH = "/v1/events"

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
    script.write_text(FLOOD_SCRIPT + WRK_DONE)
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
    data = wrk_summary(out.read_text())
    seconds = data["us"] / 1e6
    return FloodResult(
        mode=mode,
        requests=data["requests"],
        seconds=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        errors={k: data[k] for k in WRK_ERRORS},
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
    )
