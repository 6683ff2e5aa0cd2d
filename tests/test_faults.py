"""Redis faults against real redis-server processes this file starts itself (not the shared one),
with the benchmarks' harness (benchmarks/harness.py: a private server, restartable on its port).

* A hang (SIGSTOP) and a crash (SIGKILL) mid-traffic: every request finishes within the
  timeout, answered from the stale cache (marked) or with a quick 503; ``/readyz`` says
  degraded; when Redis is back (SIGCONT, or a new server on the same port with the saved data)
  the same app recovers by itself.
* A publisher killed with SIGKILL half-way (a real ``recs publish`` subprocess, frozen by a
  byte-counting proxy so "half-way" does not depend on timing): the live version keeps
  serving every article, and the next publish sweeps the leftovers.
* The circuit breaker's state machine, on a fake clock.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from benchmarks.harness import RedisServer
from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from service.redis import keys, publish, upload, versions
from service.redis.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen, GuardedRedis
from tests.paths import REPO
from tests.service_fixtures import corpus_file, loaded_model, redis_app

TIMEOUT = 0.25  # RECS_REDIS_TIMEOUT of the apps under test
COOLDOWN = 0.4  # RECS_BREAKER_COOLDOWN
# The worst a request may take: the timeout twice (redis-py retries once), plus slack for a
# loaded CI machine. Without the breaker an outage costs this on every store call.
REQUEST_BOUND = 4 * TIMEOUT + 1.5
RELATED = "/v1/articles/{}/related"
WARM = 12  # articles asked before the fault (their answers are remembered)
COLD = 4  # articles first asked during the fault (nothing to fall back on)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    instance = RedisServer(tmp_path)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def model_a(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return loaded_model(tmp_path_factory)


@pytest.fixture(scope="module")
def model_b(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """Another version of the same corpus (k=50, no re-ranking: quick to fit)."""
    articles = read_articles([corpus_file(tmp_path_factory)]).articles
    model = RelatedModel(config=ModelConfig(k=50, rerank=False)).fit(articles)
    path = tmp_path_factory.mktemp("fault-model-b") / "model"
    save_model(model, articles, path)
    return load_model(path)


def fault_app(server: RedisServer) -> Flask:
    # VERSION_TTL 0: every request reads Redis, so every request meets the fault.
    return redis_app(
        server.url,
        REDIS_TIMEOUT=TIMEOUT,
        BREAKER_COOLDOWN=COOLDOWN,
        VERSION_TTL=0,
        RETRY_AFTER=2,
    )


@dataclass
class Outcome:
    phase: str
    article: str
    status: int
    stale: bool
    seconds: float
    body: Any
    retry_after: str | None


class Traffic:
    """Threads asking for related articles until stopped (bounded in count and time).

    ``cold`` articles are only asked once the phase is no longer "before", so nothing of
    theirs is remembered when the fault starts.
    """

    def __init__(self, app: Flask, warm: list[str], cold: list[str], threads: int = 3) -> None:
        self.app = app
        self.warm = warm
        self.cold = cold
        self.phase = "before"
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads)
        self._futures = [self._pool.submit(self._run, n) for n in range(threads)]

    def _run(self, number: int) -> None:
        client = self.app.test_client()
        deadline = time.monotonic() + 60
        for i in range(5000):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            phase = self.phase
            articles = self.warm if phase == "before" else self.warm + self.cold
            article = articles[(i * 7 + number) % len(articles)]
            started = time.perf_counter()
            response = client.get(RELATED.format(article))
            elapsed = time.perf_counter() - started
            outcome = Outcome(
                phase,
                article,
                response.status_code,
                response.headers.get("X-Recs-Stale") == "1",
                elapsed,
                response.get_json(),
                response.headers.get("Retry-After"),
            )
            with self._lock:
                self.outcomes.append(outcome)
            time.sleep(0.002)  # open loop-ish: leave the two cores to the servers too

    def count(self, phase: str) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.phase == phase)

    def wait_for(self, phase: str, count: int, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while self.count(phase) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.count(phase) >= count, f"only {self.count(phase)} requests in {phase}"

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=30)
        self._pool.shutdown()
        return list(self.outcomes)


def warm_up(app: Flask, articles: list[str]) -> dict[str, Any]:
    client = app.test_client()
    answers = {}
    for article in articles:
        response = client.get(RELATED.format(article))
        assert response.status_code == 200 and "X-Recs-Stale" not in response.headers
        answers[article] = response.get_json()
    return answers


def check_outage(outcomes: list[Outcome], fresh: dict[str, Any]) -> None:
    """Requests during a fault: bounded, stale answers for remembered queries, else 503."""
    during = [o for o in outcomes if o.phase == "during"]
    assert during
    assert max(o.seconds for o in during) < REQUEST_BOUND
    for o in during:
        assert o.status in (200, 503), o
        if o.status == 503:
            assert o.article not in fresh, "a remembered answer was not served"
            assert o.retry_after == "2" and o.body["error"] == "unavailable"
        elif o.stale:
            assert o.body == fresh[o.article]
    assert any(o.stale for o in during), "nothing was served stale"
    assert any(o.status == 503 for o in during), "cold articles should get 503"
    # The breaker, not luck: only probes (one per cool-down per thread at most) wait for the
    # timeout; everything else fails over at once.
    slow = [o for o in during if o.seconds > TIMEOUT / 2]
    assert len(slow) <= 3 + 3 * (1 + int(max(o.seconds for o in during) / COOLDOWN)) + 6
    assert len(slow) < len(during) / 3


def wait_until_fresh(app: Flask, articles: list[str], limit: float = 15) -> float:
    """Seconds until every article answers fresh (no stale mark) again."""
    client = app.test_client()
    started = time.monotonic()
    pending = set(articles)
    while pending and time.monotonic() - started < limit:
        for article in sorted(pending):
            response = client.get(RELATED.format(article))
            if response.status_code == 200 and "X-Recs-Stale" not in response.headers:
                pending.discard(article)
        time.sleep(0.02)
    assert not pending, f"not recovered: {sorted(pending)[:3]}"
    return time.monotonic() - started


def test_hung_redis_serves_stale_then_recovers(server: RedisServer, model_a: LoadedModel) -> None:
    publish.publish(server.client(), model_a)
    app = fault_app(server)
    ids = list(model_a.model.ids_)
    warm, cold = ids[:WARM], ids[WARM : WARM + COLD]
    fresh = warm_up(app, warm)
    traffic = Traffic(app, warm, cold)
    try:
        traffic.wait_for("before", 30)
        server.signal(signal.SIGSTOP)
        traffic.phase = "during"
        traffic.wait_for("during", 60)
        probe = app.test_client()
        started = time.perf_counter()
        ready = probe.get("/readyz")
        assert time.perf_counter() - started < REQUEST_BOUND
        assert ready.status_code == 200, ready.get_json()
        body = ready.get_json()
        assert body["status"] == "degraded" and body["store"] == "down"
        assert body["cached_answers"] >= WARM and body["circuit"] in (OPEN, HALF_OPEN)
        server.signal(signal.SIGCONT)
        traffic.phase = "after"
        recovered = wait_until_fresh(app, warm + cold)
        traffic.wait_for("after", 30)
    finally:
        server.signal(signal.SIGCONT)
        outcomes = traffic.stop()
    check_outage(outcomes, fresh)
    assert recovered < COOLDOWN + 4 * TIMEOUT + 3
    assert all(o.status == 200 for o in outcomes if o.phase == "before")
    # Once recovered, fresh answers equal the ones from before the fault.
    client = app.test_client()
    for article in warm:
        response = client.get(RELATED.format(article))
        assert response.status_code == 200 and response.get_json() == fresh[article]
    assert client.get("/readyz").get_json()["status"] == "ready"


def test_crashed_redis_serves_stale_until_a_new_server_has_the_data(
    server: RedisServer, model_a: LoadedModel
) -> None:
    client = server.client()
    publish.publish(client, model_a)
    client.save()  # the RDB the replacement server loads
    app = fault_app(server)
    ids = list(model_a.model.ids_)
    warm, cold = ids[:WARM], ids[WARM : WARM + COLD]
    fresh = warm_up(app, warm)
    traffic = Traffic(app, warm, cold)
    try:
        traffic.wait_for("before", 30)
        server.kill()
        traffic.phase = "during"
        traffic.wait_for("during", 60)
        probe = app.test_client()
        ready = probe.get("/readyz")
        assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
        # A stale answer carries the cache validators it was remembered with.
        stale = probe.get(RELATED.format(warm[0]))
        assert stale.headers["X-Recs-Stale"] == "1"
        assert stale.headers["Cache-Control"] == "public, max-age=0"
        assert stale.headers["Warning"].startswith("110 ")
        assert int(stale.headers["Age"]) >= 0
        etag = stale.headers["ETag"]
        again = probe.get(RELATED.format(warm[0]), headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["X-Recs-Stale"] == "1"
        server.start()  # same port, same data
        traffic.phase = "after"
        wait_until_fresh(app, warm + cold)
        traffic.wait_for("after", 30)
    finally:
        outcomes = traffic.stop()
    check_outage(outcomes, fresh)
    after = [o for o in outcomes if o.phase == "after"]
    assert after[-1].status == 200 and not after[-1].stale
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["model_version"] == model_a.version


def test_outage_with_nothing_remembered_is_a_quick_503(server: RedisServer) -> None:
    app = redis_app(server.url, REDIS_TIMEOUT=TIMEOUT, BREAKER_COOLDOWN=30, VERSION_TTL=0)
    client = app.test_client()
    server.signal(signal.SIGSTOP)
    try:
        times = []
        for _ in range(20):
            started = time.perf_counter()
            response = client.get(RELATED.format("any-article"))
            times.append(time.perf_counter() - started)
            assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["status"] == "not_ready"
    finally:
        server.signal(signal.SIGCONT)
    # Only the first request waited for the timeout; the open circuit answered the rest.
    assert times[0] < REQUEST_BOUND
    assert max(times[1:]) < TIMEOUT / 2
    text = client.get("/metrics").get_data(as_text=True)
    assert "recs_store_circuit_opens_total 1.0" in text
    assert "recs_store_short_circuited_total" in text


# ------------------------------------------------------------------------- killed publisher


class FreezingProxy:
    """A TCP proxy to Redis that stops forwarding after ``limit`` client bytes, for good.

    The publisher then waits for replies that never come: stuck half-way, deterministically.
    """

    def __init__(self, port: int, limit: int) -> None:
        self.target = port
        self.limit = limit
        self.forwarded = 0
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            for sock in (downstream, upstream):
                sock.settimeout(0.1)
                self._sockets.append(sock)
            for args in ((downstream, upstream, True), (upstream, downstream, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        while not self._closed.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if counted:
                with self._lock:
                    room = max(0, self.limit - self.forwarded)
                    data = data[:room]
                    self.forwarded += len(data)
                    if self.forwarded >= self.limit:
                        self.frozen.set()
            if data:
                try:
                    sink.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()


def payload_bytes(loaded: LoadedModel, batch: int) -> int:
    """Bytes of neighbour and metadata values a publish of ``loaded`` sends (about)."""
    total = 0
    for _, nb, articles in upload.batches(loaded, batch):
        total += sum(len(blob) for blob in nb) + sum(len(a.meta) for a in articles)
    return total


def recs(*args: str) -> list[str]:
    executable = Path(sys.executable).with_name("recs")
    prefix = [str(executable)] if executable.exists() else [sys.executable, "-m", "scripts.cli"]
    return prefix + list(args)


def serve_all(app: Flask, loaded: LoadedModel) -> dict[str, Any]:
    client = app.test_client()
    out = {}
    for article in loaded.model.ids_:
        response = client.get(RELATED.format(article), query_string={"k": 10})
        assert response.status_code == 200, (article, response.get_json())
        out[article] = response.get_json()
    return out


def test_publisher_killed_half_way(
    server: RedisServer, model_a: LoadedModel, model_b: LoadedModel
) -> None:
    client = server.client()
    publish.publish(client, model_a)
    app = fault_app(server)
    before = serve_all(app, model_a)
    batch = 20
    total_rows = len(model_b.articles)
    proxy = FreezingProxy(server.port, payload_bytes(model_b, batch) // 2)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    publisher = subprocess.Popen(
        recs(
            "publish",
            "--model",
            str(model_b.path),
            "--redis-url",
            f"redis://127.0.0.1:{proxy.port}/0",
            "--batch-size",
            str(batch),
        ),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proxy.frozen.wait(timeout=60), "the publisher never got half-way"
        time.sleep(0.1)  # let the last forwarded batch land
        assert publisher.poll() is None, publisher.communicate()
        publisher.send_signal(signal.SIGKILL)
        assert publisher.wait(timeout=10) == -signal.SIGKILL
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait(timeout=10)
        publisher.communicate()
        proxy.close()

    # Half of b is in Redis, marked in progress, never listed; a is live and whole.
    written = list(
        client.scan_iter(match=keys.neighbours_prefix(model_b.version) + "*", count=1000)
    )
    assert 0 < len(written) < total_rows
    assert client.zscore(keys.PUBLISHING, model_b.version) is not None
    assert client.zscore(keys.VERSIONS, model_b.version) is None
    assert versions.current_version(client) == model_a.version
    assert serve_all(app, model_a) == before

    # The dead publisher's lock refuses the next publish until it expires (the CLI exits 3;
    # asked in-process here, a third interpreter start costs seconds on a loaded CI box)...
    with pytest.raises(publish.PublishError, match="lock held"):
        publish.publish(client, model_b)
    assert versions.current_version(client) == model_a.version
    client.delete(keys.PUBLISH_LOCK)  # ... which we do not wait publish.LOCK_TTL_MS for

    done = subprocess.run(
        recs("publish", "--model", str(model_b.path), "--redis-url", server.url),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"cleaned partial {model_b.version}" in done.stdout
    assert client.zcard(keys.PUBLISHING) == 0
    assert versions.current_version(client) == model_b.version
    after = serve_all(app, model_b)
    for article, body in after.items():
        assert body["model_version"] == model_b.version
        want = [n for n, _ in model_b.model.neighbours(article) if n != article][:10]
        assert [item["id"] for item in body["items"]] == want


# ------------------------------------------------------------------------- the breaker itself


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise redis.ConnectionError("refused")


def test_breaker_opens_fails_fast_and_probes_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown=2.0, clock=clock, probe_timeout=5.0)
    assert breaker.call(lambda: "ok") == "ok" and breaker.state == CLOSED
    with pytest.raises(redis.ConnectionError):
        breaker.call(fail)
    assert breaker.state == OPEN
    calls = []
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: calls.append(1))
    assert calls == [] and breaker.seconds_until_probe() == 2.0
    clock.now += 2.0
    assert breaker.state == HALF_OPEN
    # The probe is admitted; while it runs every other caller still fails fast.
    admitted = threading.Event()
    release = threading.Event()

    def slow_probe() -> str:
        admitted.set()
        release.wait(5)
        return "ok"

    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(breaker.call, slow_probe)
        assert admitted.wait(5)
        with pytest.raises(CircuitOpen):
            breaker.call(lambda: "other")
        release.set()
        assert probe.result(5) == "ok"
    assert breaker.state == CLOSED


def test_breaker_reopens_on_a_failed_probe_and_retries_a_lost_one() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown=1.0, clock=clock, probe_timeout=3.0)
    with pytest.raises(redis.TimeoutError):
        breaker.call(lambda: (_ for _ in ()).throw(redis.TimeoutError("slow")))
    clock.now += 1.0
    with pytest.raises(redis.ConnectionError):
        breaker.call(fail)  # the probe fails: open again, a new cool-down
    assert breaker.state == OPEN and breaker.seconds_until_probe() == 1.0
    clock.now += 1.0
    breaker._admit()  # a probe admitted whose worker then died without reporting
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "other")
    clock.now += 3.0  # probe_timeout later someone else may probe
    assert breaker.call(lambda: "ok") == "ok" and breaker.state == CLOSED
    # An error reply means the server answered: not a failure.
    with pytest.raises(redis.ResponseError):
        breaker.call(lambda: (_ for _ in ()).throw(redis.ResponseError("WRONGTYPE")))
    assert breaker.state == CLOSED
    # A threshold above one tolerates isolated blips.
    tolerant = CircuitBreaker(cooldown=1.0, threshold=2, clock=clock)
    with pytest.raises(redis.ConnectionError):
        tolerant.call(fail)
    assert tolerant.state == CLOSED
    with pytest.raises(redis.ConnectionError):
        tolerant.call(fail)
    assert tolerant.state == OPEN


def test_guarded_client_covers_commands_scripts_and_pipelines(server: RedisServer) -> None:
    breaker = CircuitBreaker(cooldown=60)
    client = GuardedRedis.from_url(server.url, breaker=breaker, socket_timeout=TIMEOUT)
    script = client.register_script("return redis.call('GET', KEYS[1])")
    client.set("k", "v")
    assert script(keys=["k"]) == b"v"
    pipe = client.pipeline()
    pipe.get("k")
    assert pipe.execute() == [b"v"]
    breaker.record_failure()
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen):
        client.get("k")
    with pytest.raises(CircuitOpen):
        script(keys=["k"])
    pipe = client.pipeline()
    pipe.get("k")
    with pytest.raises(CircuitOpen):
        pipe.execute()
    client.close()


# ------------------------------------------------------------------------- the stale cache


def answer(body: bytes, cache_control: str | None = None) -> Any:
    from service.resilience import Answer

    return Answer(body, "application/json", '"e"', None, cache_control, time.monotonic())


def test_stale_cache_is_bounded_by_entries_and_bytes() -> None:
    from service.resilience import AnswerCache

    cache = AnswerCache(size=3, max_bytes=100)
    for n in range(5):
        cache.put(("related", str(n)), answer(b"x" * 10))
    assert len(cache) == 3 and cache.get(("related", "0")) is None
    assert cache.get(("related", "4")) is not None and cache.nbytes == 30
    cache.put(("related", "big"), answer(b"y" * 90))  # evicts until the bytes fit
    assert cache.nbytes <= 100 and cache.get(("related", "big")) is not None
    cache.put(("related", "huge"), answer(b"z" * 101))  # never kept: would evict everything
    assert cache.get(("related", "huge")) is None and cache.get(("related", "big")) is not None
    cache.put(("related", "big"), answer(b"w" * 5))  # replacing an entry frees its bytes
    assert cache.get(("related", "big")).body == b"w" * 5  # type: ignore[union-attr]
    assert cache.nbytes == sum(len(a.body) for a in cache._data.values())


def test_stale_answers_keep_privacy() -> None:
    from service.resilience import _stale_cache_control

    assert _stale_cache_control("public, max-age=300") == "public, max-age=0"
    assert _stale_cache_control(None) == "public, max-age=0"
    assert _stale_cache_control("private, max-age=60") == "private, max-age=0"
    assert _stale_cache_control("no-store") == "no-store"


def test_publish_losing_redis_half_way_exits_4_and_keeps_the_live_version(
    server: RedisServer, model_a: LoadedModel, model_b: LoadedModel
) -> None:
    client = server.client()
    publish.publish(client, model_a)
    app = fault_app(server)
    before = serve_all(app, model_a)
    batch = 20
    proxy = FreezingProxy(server.port, payload_bytes(model_b, batch) // 2)
    publisher = subprocess.Popen(
        recs(
            "publish",
            "--model",
            str(model_b.path),
            "--redis-url",
            f"redis://127.0.0.1:{proxy.port}/0",
            "--batch-size",
            str(batch),
        ),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.frozen.wait(timeout=60), "the publisher never got half-way"
        proxy.close()  # the network to Redis is gone for good: every retry is refused
        _, stderr = publisher.communicate(timeout=120)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()
        proxy.close()
    # Retried with backoff, then gave up: exit 4, one line, nothing live changed.
    assert publisher.returncode == 4, stderr
    assert "publish failed" in stderr and "Traceback" not in stderr
    assert versions.current_version(client) == model_a.version
    assert client.zscore(keys.VERSIONS, model_b.version) is None
    assert serve_all(app, model_a) == before
