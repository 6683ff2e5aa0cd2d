"""The soak's traffic (benchmarks/bench_soak.py): a skewed request mix, a closed-loop capacity
probe and an open-loop sender on keep-alive connections that records every answer's status
and ``X-Recs-Stale`` mark (which benchmarks/load.py's fixed-rate sender does not)."""

from __future__ import annotations

import http.client
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.harness import HOST


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


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bool]:
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
                get(connection, paths[i])
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
                status, stale = get(connection, path)
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
