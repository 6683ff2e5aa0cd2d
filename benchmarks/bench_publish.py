"""Benchmark ``recs publish``: wall time and Redis memory per article on a throwaway server.

Usage: ``python benchmarks/bench_publish.py MODEL_DIR [--redis-server PATH] [--runs N]``
Starts redis-server on a free port (no persistence), publishes the model, prints the figures
and a markdown table row, and stops the server.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from models.artifact import load_model
from service.redis import publish


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    executable: str, port: int, directory: Path, *, appendonly: bool = False
) -> subprocess.Popen[bytes]:
    """A redis-server (no snapshots; an append-only file if asked), ready to answer."""
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        + ["yes" if appendonly else "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--runs", type=int, default=3, help="Publishes to time (fresh DB each).")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    loaded = load_model(args.model)
    load_seconds = time.perf_counter() - started
    n = len(loaded.articles)
    k = int(loaded.model.neighbours_.shape[1])
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        process = start_server(args.redis_server, port, Path(scratch))
        try:
            client = redis.Redis(port=port)
            times, per_article = [], []
            for _ in range(args.runs):
                client.flushall()
                # Memory is measured after a flush so allocator state is comparable per run.
                before = int(client.info("memory")["used_memory"])
                result = publish.publish(client, loaded)
                times.append(result.seconds)
                after = int(client.info("memory")["used_memory"])
                per_article.append((after - before) / n)
            version = publish.current_version(client)
            server = client.info("server")["redis_version"]
        finally:
            process.terminate()
            process.wait(timeout=10)
    best, worst = min(times), max(times)
    bytes_per = per_article[-1]
    print(
        f"model {loaded.version} ({args.model}): {n:,} articles, k={k}, load {load_seconds:.1f} s"
    )
    print(f"published {version} on redis {server}, {args.runs} run(s)")
    print(f"publish wall time: best {best:.2f} s, worst {worst:.2f} s")
    print(f"used_memory delta / article: {bytes_per:.0f} bytes")
    print()
    print("| corpus | articles | k | publish (best of runs) | redis bytes / article |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {args.model.name} | {n:,} | {k} | {best:.2f} s | {bytes_per:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
