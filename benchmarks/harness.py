"""Servers for benchmarks and tests: free ports, child processes, a private redis-server with a
model published to it, and gunicorn running the API (or another app) with the repo's settings.

Everything listens on 127.0.0.1. Children start in their own session, so stopping one stops the
processes it forked too (gunicorn's workers). The load generators live in benchmarks/load.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from service.redis.client import Client, RedisUnavailable, call, connect

if TYPE_CHECKING:
    from models.artifact import LoadedModel

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_APP = "service:create_app()"
# Benchmarks that flood a limited route measure the route, not the limiter: both limits off.
NO_RATE_LIMITS = {"EVENTS_RATE_LIMIT": "off", "RECOMMENDATIONS_RATE_LIMIT": "off"}


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


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


class RedisServer:
    """A private redis-server on a free port, without snapshots; restartable on the same port.

    Its data survives a restart only through an explicit save (``stop(save=True)``, SAVE) or,
    with ``appendonly``, its append-only file, both kept in ``directory``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        executable: str | None = None,
        appendonly: bool = False,
        dbfilename: str = "dump.rdb",
    ) -> None:
        self.directory = directory
        self.executable = (
            executable
            or os.environ.get("REDIS_SERVER")
            or shutil.which("redis-server")
            or "/usr/bin/redis-server"
        )
        self.appendonly = appendonly
        self.dbfilename = dbfilename
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it answers PING."""
        argv = [self.executable, "--port", str(self.port), "--bind", HOST, "--save", ""]
        argv += ["--appendonly", "yes" if self.appendonly else "no"]
        argv += ["--dir", str(self.directory), "--dbfilename", self.dbfilename]
        self.process = subprocess.Popen(
            argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                try:
                    call(client.ping)
                    return
                except RedisUnavailable:
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RuntimeError("redis-server did not start")

    def client(self, timeout: float = 5.0) -> Client:
        """A new client of this server (no retries: the callers see every failure)."""
        return connect(self.url, timeout=timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def signal(self, number: int) -> None:
        """Send a signal (SIGSTOP hangs the server, SIGCONT resumes it)."""
        os.kill(self.pid, number)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit (after a SHUTDOWN sent by someone else)."""
        assert self.process is not None, "not started"
        return self.process.wait(timeout=timeout)

    def stop(self, *, save: bool = False) -> None:
        """Stop the server if it runs; ``save``: SHUTDOWN SAVE (as a maintenance restart does)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM
        if save:
            client = self.client(timeout=30)
            try:
                call(lambda: client.shutdown(save=True))
            except RedisUnavailable:
                pass  # the server closes the connection as it exits
            finally:
                client.close()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def publish_model(client: Client, model: Path | LoadedModel) -> list[str]:
    """Publish a model (a directory, or one already loaded); return its article ids."""
    from models.artifact import load_model
    from service.redis.publish import publish

    loaded = load_model(model) if isinstance(model, Path) else model
    result = publish(client, loaded)
    print(f"published {result.version}: {result.articles} articles in {result.seconds:.1f} s")
    return [article.id for article in loaded.articles]


def api_env(
    settings: Mapping[str, str | int | Path], *, prometheus_dir: Path | None = None
) -> dict[str, str]:
    """The environment of an API server: this process's without any ``RECS_*`` or ``BENCH_*``
    setting (nothing leaks in from the caller's shell), then ``RECS_<NAME>`` per setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_", "BENCH_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({f"RECS_{name}": str(value) for name, value in settings.items()})
    if prometheus_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus_dir)
    return env


class Gunicorn(NamedTuple):
    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]  # the master


def start_gunicorn(
    procs: Processes,
    env: Mapping[str, str],
    *,
    app: str = API_APP,
    workers: int | None = None,
    threads: int | None = None,
    options: Sequence[str] = (),
    stdout: IO[Any] | int | None = subprocess.DEVNULL,
    ready: str | None = "/readyz",
) -> Gunicorn:
    """gunicorn with the repo's gunicorn.conf.py on a free loopback port, ready when it returns.

    The port goes in ``RECS_BIND`` as in a deployment; ``workers``/``threads`` become flags
    (``None``: the conf file's, e.g. ``RECS_WORKERS``). ``ready``: a path that must answer 200
    first (``None``: do not wait).
    """
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    argv += [*options, app]
    child_env = {**env, "RECS_BIND": f"{HOST}:{port}"}
    process = procs.start(argv, cwd=REPO, env=child_env, stdout=stdout, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    if ready is not None:
        try:
            wait_http(base + ready, process)
        except BaseException:
            # Not ready: stop it here, so a caller whose own cleanup only covers a started
            # server (a test's try/finally) leaves nothing behind.
            _signal_group(process, signal.SIGKILL)
            process.wait()
            raise
    return Gunicorn(base, process)


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
