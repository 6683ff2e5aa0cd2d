"""Benchmark ``recs publish``: wall time and Redis memory per article on a throwaway server.

Usage: ``python -m benchmarks.bench_publish MODEL_DIR [--redis-server PATH] [--runs N]``
Starts redis-server on a free port (no persistence), publishes the model, prints the figures
and a markdown table row, and stops the server.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import RedisServer
from models.artifact import load_model
from service.redis import publish, versions


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
    with (
        tempfile.TemporaryDirectory() as scratch,
        RedisServer(Path(scratch), executable=args.redis_server) as server,
    ):
        client = server.client(timeout=60)
        times, per_article = [], []
        for _ in range(args.runs):
            client.flushall()
            # Memory is measured after a flush so allocator state is comparable per run.
            before = int(client.info("memory")["used_memory"])
            result = publish.publish(client, loaded)
            times.append(result.seconds)
            after = int(client.info("memory")["used_memory"])
            per_article.append((after - before) / n)
        version = versions.current_version(client)
        redis_version = client.info("server")["redis_version"]
        client.close()
    best, worst = min(times), max(times)
    bytes_per = per_article[-1]
    print(
        f"model {loaded.version} ({args.model}): {n:,} articles, k={k}, load {load_seconds:.1f} s"
    )
    print(f"published {version} on redis {redis_version}, {args.runs} run(s)")
    print(f"publish wall time: best {best:.2f} s, worst {worst:.2f} s")
    print(f"used_memory delta / article: {bytes_per:.0f} bytes")
    print()
    print("| corpus | articles | k | publish (best of runs) | redis bytes / article |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {args.model.name} | {n:,} | {k} | {best:.2f} s | {bytes_per:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
