"""Soak the API at a fixed rate while Redis is restarted twice; report errors, p99 and RSS.

Usage: ``python -m benchmarks.bench_soak [--model DIR] [--duration 300] [--load 0.6] ...``

Everything runs on 127.0.0.1: a private redis-server (RDB in a temporary directory, so a
restart brings the same data back), the model published to it, and gunicorn with
``gunicorn.conf.py`` (worker recycling off for the run, ``--max-requests 0``, so worker RSS at
the end shows growth instead of a fresh worker; the rate limits off, since one client sends
all the traffic). Capacity is measured first with a short closed-loop burst; the soak then
sends ``--load`` x capacity requests per second, open loop (latency counts from the scheduled
send time, so a stall is not hidden by the generator waiting for it). At 1/3 and 2/3 of the
run Redis is stopped (SHUTDOWN SAVE) and started again ``--down`` seconds later. Traffic is
~80% ``/v1/articles/ID/related`` over a skewed id distribution (hot articles, as on a news
site) and ~20% ``/v1/recommendations`` when the app has it. Prints a markdown table; every loop
is bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.corpora import SAMPLE_ARTICLES
from benchmarks.harness import (
    HOST,
    NO_RATE_LIMITS,
    Processes,
    RedisServer,
    api_env,
    publish_model,
    start_gunicorn,
)
from benchmarks.soak_report import print_tables, summarise, timeline
from benchmarks.soak_traffic import Requests, capacity, get, soak


def worker_rss(master: int) -> dict[int, int]:
    """RSS in bytes of each gunicorn worker (children of the master process)."""
    out = {}
    for path in Path("/proc").iterdir():
        if not path.name.isdigit():
            continue
        try:
            status = (path / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == master and "VmRSS" in fields:
            out[int(path.name)] = int(fields["VmRSS"].split()[0]) * 1024
    return out


def sample_model(directory: Path) -> Path:
    """Train the bundled sample (k=50) into ``directory``/model."""
    from models.artifact import save_model
    from models.config import ModelConfig
    from models.model import RelatedModel
    from models.records import read_articles

    print("training the sample model (k=50) ...", flush=True)
    articles = read_articles([SAMPLE_ARTICLES]).articles
    model = RelatedModel(config=ModelConfig(k=50)).fit(articles)
    save_model(model, articles, directory / "model")
    return directory / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, help="Model directory (default: train the sample).")
    parser.add_argument("--duration", type=float, default=300.0, help="Soak seconds.")
    parser.add_argument("--load", type=float, default=0.6, help="Share of measured capacity.")
    parser.add_argument("--down", type=float, default=5.0, help="Seconds Redis stays down.")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers.")
    parser.add_argument("--threads", type=int, default=16, help="Load generator connections.")
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--step", type=float, default=10.0, help="Timeline bucket seconds.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    if not 0 < args.load <= 1 or args.duration < 10 or args.duration > 3600:
        parser.error("--load must be in (0, 1] and --duration 10 to 3600 seconds")

    from models.artifact import load_model

    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        directory = Path(scratch)
        loaded = load_model(args.model or sample_model(directory))
        server = RedisServer(directory, executable=args.redis_server, dbfilename="soak.rdb")
        procs = Processes()
        try:
            server.start()
            client = server.client(timeout=60)
            ids = publish_model(client, loaded)
            client.save()
            client.close()
            report = _run(args, procs, server, ids)
        finally:
            procs.stop_all()
            server.stop()
    print_tables(report, args.step)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _run(
    args: argparse.Namespace, procs: Processes, server: RedisServer, ids: list[str]
) -> dict[str, Any]:
    """Capacity, then the soak with two restarts; the figures as a JSON-ready dict."""
    settings = {"REDIS_URL": server.url, "WORKERS": args.workers, "LOG_LEVEL": "warning"}
    env = api_env({**settings, **NO_RATE_LIMITS})
    # No access log (it would cost the generator's cores) and no recycling (RSS must show
    # growth, not a fresh worker).
    options = ["--access-logfile", "/dev/null", "--max-requests", "0"]
    base, master = start_gunicorn(procs, env, options=options)
    port = int(base.rsplit(":", 1)[1])
    probe = http.client.HTTPConnection(HOST, port, timeout=5)
    has_recs = get(probe, "/v1/recommendations?history=" + ids[0])[0] == 200
    probe.close()
    requests = Requests(ids, has_recs)
    # Warm-up: every article once per worker-ish, so caches are in steady state.
    capacity(port, requests.paths(len(ids) * 2), 30, args.threads)
    rss_start = worker_rss(master.pid)
    burst = requests.paths(int(args.capacity_seconds * 5000))
    rate_max = capacity(port, burst, args.capacity_seconds, args.threads)
    rate = rate_max * args.load
    count = int(rate * args.duration)
    print(
        f"capacity {rate_max:.0f} req/s; soak at {rate:.0f} req/s"
        f" for {args.duration:.0f} s ({count:,} requests)",
        flush=True,
    )
    windows: list[tuple[float, float]] = []
    restarts: list[dict[str, float]] = []

    def restarter() -> None:
        origin = time.monotonic()
        for fraction in (1 / 3, 2 / 3):
            time.sleep(max(0.0, origin + args.duration * fraction - time.monotonic()))
            down_at = time.monotonic() - origin
            server.stop(save=True)  # as a restart for maintenance would
            time.sleep(args.down)
            server.start()
            up_at = time.monotonic() - origin
            # The window covers the outage and the recovery just after it.
            windows.append((down_at, up_at + 5.0))
            restarts.append({"down_at_s": down_at, "up_at_s": up_at})

    # RSS and machine load per timeline step: growth that levels off is caches filling up to
    # their bounds; a leak keeps climbing.
    gauges: dict[int, tuple[float, float]] = {}
    done = threading.Event()

    def sampler() -> None:
        origin = time.monotonic()
        while not done.wait(args.step / 2):
            bucket = int((time.monotonic() - origin) // args.step)
            rss = sum(worker_rss(master.pid).values()) / 2**20
            gauges[bucket] = (rss, os.getloadavg()[0])

    thread = threading.Thread(target=restarter, daemon=True)
    thread.start()
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    samples = soak(port, requests.paths(count), rate, args.threads, timeout=30)
    done.set()
    thread.join(timeout=args.duration + 120)
    watcher.join(timeout=30)
    rss_end = worker_rss(master.pid)
    return {
        "capacity_rps": rate_max,
        "rate_rps": rate,
        "duration_s": args.duration,
        "workers": args.workers,
        "restarts": restarts,
        "phases": summarise(samples, windows),
        "timeline": timeline(samples, args.step),
        "gauges": {str(k): {"rss_mb": v[0], "load": v[1]} for k, v in gauges.items()},
        "rss_start_mb": {str(k): v / 2**20 for k, v in rss_start.items()},
        "rss_end_mb": {str(k): v / 2**20 for k, v in rss_end.items()},
        "same_workers": sorted(rss_start) == sorted(rss_end),
    }


if __name__ == "__main__":
    sys.exit(main())
