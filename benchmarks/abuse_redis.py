"""Redis as benchmarks/bench_abuse.py watches it: memory (sampled through a phase), CPU, keys
outside the published versions, and SLOWLOG."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from service.redis.client import ANY_ERROR, Client, RedisUnavailable, call


class MemorySampler(threading.Thread):
    """``used_memory`` every ``interval`` seconds until stopped (one INFO call each)."""

    def __init__(self, client: Client, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            try:
                used = call(lambda: used_memory(self.client), ANY_ERROR)
            except RedisUnavailable:
                used = -1
            self.samples.append((time.monotonic() - start, used))
            self._stop_event.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop_event.set()
        self.join(5)
        self.client.close()
        return [s for s in self.samples if s[1] >= 0]


def used_memory(client: Client) -> int:
    return int(client.info("memory")["used_memory"])


def used_dataset(client: Client) -> int:
    return int(client.info("memory")["used_memory_dataset"])


def redis_cpu(client: Client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def event_keys(client: Client) -> dict[str, int]:
    """Keys outside the published versions, counted by their first two ``:`` fields."""
    counts: Counter[str] = Counter()
    for raw in client.scan_iter(count=1000):
        name = raw.decode("utf-8", "replace")
        if name.startswith("rs:v:"):
            continue
        counts[":".join(name.split(":")[:2])] += 1
    return dict(sorted(counts.items()))


def slowlog_entries(client: Client) -> list[dict[str, Any]]:
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
