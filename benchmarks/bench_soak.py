"""Soak the API at a fixed rate while Redis is restarted twice; report errors, p99 and RSS.

Usage: ``python benchmarks/bench_soak.py [--model DIR] [--duration 300] [--load 0.6] ...``

Everything runs on 127.0.0.1: a private redis-server (RDB in a temporary directory, so a
restart brings the same data back), the model published to it, and gunicorn with
``gunicorn.conf.py`` (worker recycling off for the run, ``--max-requests 0``, so worker RSS at
the end shows growth instead of a fresh worker). Capacity is measured first with a short
closed-loop burst; the soak then sends ``--load`` x capacity requests per second, open loop
(latency counts from the scheduled send time, so a stall is not hidden by the generator
waiting for it). At 1/3 and 2/3 of the run Redis is stopped (SIGTERM, it saves) and started
again ``--down`` seconds later. Traffic is ~80% ``/v1/articles/ID/related`` over a skewed id
distribution (hot articles, as on a news site) and ~20% ``/v1/recommendations`` when the app
has it. Prints a markdown table; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server whose data survives restarts through its RDB file."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", HOST, "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.directory), "--dbfilename", "soak.rdb"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host=HOST, port=self.port)
        for _ in range(400):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Save and shut down (as a restart for maintenance would)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            redis.Redis(host=HOST, port=self.port, socket_timeout=30).shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def gunicorn(redis_url: str, workers: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """gunicorn serving the app from ``redis_url`` until the block ends."""
    env = {
        **os.environ,
        "RECS_REDIS_URL": redis_url,
        "RECS_BIND": f"{HOST}:{port}",
        "RECS_WORKERS": str(workers),
        "RECS_LOG_LEVEL": "warning",
        "PYTHONPATH": str(REPO),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")]
    # No access log (it would cost the generator's cores) and no recycling (RSS must show
    # growth, not a fresh worker).
    command += ["--access-logfile", "/dev/null", "--max-requests", "0", "service:create_app()"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection(HOST, port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not become ready")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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


@dataclass
class Sample:
    scheduled: float  # seconds since the start of the soak
    latency: float  # from the scheduled send time to the full answer
    status: int  # 0: connection error or timeout
    stale: bool


class Requests:
    """The request mix: skewed /related ids, some /recommendations."""

    def __init__(self, ids: list[str], recommendations: bool, seed: int = 7) -> None:
        self.ids = ids
        self.recommendations = recommendations
        rng = np.random.default_rng(seed)
        # Zipf-like popularity over a random order of the articles.
        order = rng.permutation(len(ids))
        weights = 1.0 / np.arange(1, len(ids) + 1) ** 1.1
        self._p = weights / weights.sum()
        self._order = order
        self._rng = rng

    def paths(self, count: int) -> list[str]:
        picks = self._order[self._rng.choice(len(self.ids), size=count, p=self._p)]
        kinds = self._rng.random(count)
        out = []
        for n, pick in enumerate(picks):
            article = self.ids[int(pick)]
            if self.recommendations and kinds[n] < 0.2:
                other = self.ids[int(picks[(n + 1) % count])]
                out.append(f"/v1/recommendations?history={article},{other}&k=6")
            else:
                out.append(f"/v1/articles/{article}/related?k=6")
        return out


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bool]:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("X-Recs-Stale") == "1"


def capacity(port: int, paths: list[str], seconds: float, threads: int) -> float:
    """Requests per second with ``threads`` closed-loop clients (keep-alive)."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def run(number: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        for i in range(number, len(paths), threads):
            if time.monotonic() > stop:
                break
            try:
                _get(connection, paths[i])
                done[number] += 1
            except OSError:
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.close()

    started = time.monotonic()
    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=seconds + 30)
    return sum(done) / (time.monotonic() - started)


def soak(port: int, paths: list[str], rate: float, threads: int, timeout: float) -> list[Sample]:
    """Send ``paths`` open loop at ``rate`` per second; one sample per request."""
    work: queue.Queue[tuple[float, str] | None] = queue.Queue(maxsize=threads * 50)
    samples: list[Sample] = []
    lock = threading.Lock()
    origin = time.monotonic()

    def run() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        while True:
            item = work.get()
            if item is None:
                break
            scheduled, path = item
            try:
                status, stale = _get(connection, path)
            except OSError:
                status, stale = 0, False
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
            sample = Sample(scheduled, time.monotonic() - origin - scheduled, status, stale)
            with lock:
                samples.append(sample)
        connection.close()

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for n, path in enumerate(paths):
        scheduled = n / rate
        delay = origin + scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            # A full queue means the generator fell behind: the request is late, not dropped,
            # and its latency (from the scheduled time) shows it.
            work.put((scheduled, path), timeout=timeout)
        except queue.Full:
            with lock:
                samples.append(Sample(scheduled, timeout, 0, False))
    for _ in pool:
        work.put(None)
    for thread in pool:
        thread.join(timeout=timeout + 30)
    return samples


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _phase(scheduled: float, windows: list[tuple[float, float]]) -> str:
    for number, (start, end) in enumerate(windows, 1):
        if scheduled < start:
            return "before" if number == 1 else "between"
        if scheduled < end:
            return f"restart {number}"
    return "after"


def _figures(group: list[Sample]) -> dict[str, float]:
    latencies = [s.latency * 1000 for s in group]
    errors = sum(1 for s in group if s.status != 200)
    return {
        "requests": len(group),
        "errors": errors,
        "error_rate": errors / len(group) if group else 0.0,
        "unavailable_503": sum(1 for s in group if s.status == 503),
        "failed_connections": sum(1 for s in group if s.status == 0),
        "stale": sum(1 for s in group if s.stale),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
    }


def summarise(samples: list[Sample], windows: list[tuple[float, float]]) -> dict[str, dict]:
    """Per phase (before, restart 1, between, restart 2, after, all): errors and latency."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(_phase(sample.scheduled, windows), []).append(sample)
    order = ["before", "restart 1", "between", "restart 2", "after"]
    out = {name: _figures(groups[name]) for name in order if name in groups}
    out["all"] = _figures(samples)
    return out


def timeline(samples: list[Sample], step: float) -> list[dict[str, float]]:
    """The same figures per ``step`` seconds of scheduled time."""
    buckets: dict[int, list[Sample]] = {}
    for sample in samples:
        buckets.setdefault(int(sample.scheduled // step), []).append(sample)
    return [{"t_s": n * step, **_figures(buckets[n])} for n in sorted(buckets)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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

    from models.artifact import load_model, save_model
    from service.redis import publish

    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        directory = Path(scratch)
        if args.model is None:
            from models.config import ModelConfig
            from models.model import RelatedModel
            from models.records import read_articles

            print("training the sample model (k=50) ...", flush=True)
            articles = read_articles([REPO / "data/sample/reuters-sample.jsonl"]).articles
            model = RelatedModel(config=ModelConfig(k=50)).fit(articles)
            save_model(model, articles, directory / "model")
            args.model = directory / "model"
        loaded = load_model(args.model)
        ids = list(loaded.model.ids_)
        server = RedisServer(args.redis_server, directory)
        server.start()
        try:
            client = redis.Redis(host=HOST, port=server.port)
            publish.publish(client, loaded)
            client.save()
            client.close()
            port = free_port()
            url = f"redis://{HOST}:{server.port}/0"
            with gunicorn(url, args.workers, port) as master:
                probe = http.client.HTTPConnection(HOST, port, timeout=5)
                has_recs = _get(probe, "/v1/recommendations?history=" + ids[0])[0] == 200
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
                        server.stop()
                        time.sleep(args.down)
                        server.start()
                        up_at = time.monotonic() - origin
                        # The window covers the outage and the recovery just after it.
                        windows.append((down_at, up_at + 5.0))
                        restarts.append({"down_at_s": down_at, "up_at_s": up_at})

                # RSS and machine load per timeline step: growth that levels off is caches
                # filling up to their bounds; a leak keeps climbing.
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
        finally:
            server.stop()
    figures = summarise(samples, windows)
    same_workers = sorted(rss_start) == sorted(rss_end)
    report = {
        "capacity_rps": rate_max,
        "rate_rps": rate,
        "duration_s": args.duration,
        "workers": args.workers,
        "restarts": restarts,
        "phases": figures,
        "timeline": timeline(samples, args.step),
        "gauges": {str(k): {"rss_mb": v[0], "load": v[1]} for k, v in gauges.items()},
        "rss_start_mb": {str(k): v / 2**20 for k, v in rss_start.items()},
        "rss_end_mb": {str(k): v / 2**20 for k, v in rss_end.items()},
        "same_workers": same_workers,
    }
    print()
    print(
        "| phase | requests | errors | 503 | conn. errors | stale 200 | p50 ms | p99 ms | max ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, f in figures.items():
        print(
            f"| {name} | {f['requests']:,} | {f['error_rate']:.2%} | {f['unavailable_503']:,}"
            f" | {f['failed_connections']:,} | {f['stale']:,} | {f['p50_ms']:.1f}"
            f" | {f['p99_ms']:.1f} | {f['max_ms']:.0f} |"
        )
    print()
    print("| t (s) | requests | errors | stale 200 | p99 ms | workers' RSS MB | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in timeline(samples, args.step):
        rss, load = gauges.get(int(row["t_s"] // args.step), (float("nan"), float("nan")))
        print(
            f"| {row['t_s']:.0f} | {row['requests']:,} | {row['error_rate']:.1%}"
            f" | {row['stale']:,} | {row['p99_ms']:.1f} | {rss:.1f} | {load:.1f} |"
        )
    print()
    for pid in sorted(rss_start):
        end = rss_end.get(pid)
        end_text = f"{end / 2**20:.1f} MB" if end is not None else "gone"
        print(f"worker {pid}: RSS {rss_start[pid] / 2**20:.1f} MB at start, {end_text} at end")
    print(f"same workers at start and end: {same_workers}")
    print("restarts (s into the soak): " + json.dumps(restarts))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
