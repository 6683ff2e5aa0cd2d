"""Gunicorn settings for the API: ``gunicorn -c gunicorn.conf.py 'service:create_app()'``.

Environment: RECS_BIND (host:port, default 127.0.0.1:8000), RECS_WORKERS (default
WEB_CONCURRENCY, else 2 x CPUs + 1 capped at 8), RECS_TIMEOUT (seconds, default 30),
RECS_MAX_REQUESTS (worker recycling, default 200,000; 0: never) and
RECS_LOG_LEVEL. With several workers, set PROMETHEUS_MULTIPROC_DIR (the image does) so /metrics
sums all workers. The app itself reads RECS_REDIS_URL / RECS_MODEL_DIR and the other RECS_*
settings (see service/__init__.py).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name} must be an integer, got {raw!r}") from None


bind = os.environ.get("RECS_BIND", "127.0.0.1:8000")
workers = _int_env(
    "RECS_WORKERS", _int_env("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8))
)
worker_class = "sync"
# A request is a few store round trips; 30 s only catches a wedged worker.
timeout = _int_env("RECS_TIMEOUT", 30)
# Time for in-flight requests to finish on SIGTERM (a rolling deploy) before workers are killed.
graceful_timeout = 20
keepalive = 5
# Request size limits, enforced before the app sees anything (gunicorn's defaults, stated so
# they are not lowered or raised by accident): the longest legitimate URL is an article id
# plus an exclude list, well under 4 KiB. Bodies are capped by the app (RECS_MAX_CONTENT_LENGTH).
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# Sync workers hold one connection each: run behind a buffering proxy (nginx, a cloud load
# balancer) so slow clients cannot tie workers up; every store call is bounded by
# RECS_REDIS_TIMEOUT and the circuit breaker, so the app itself never waits long.
# Recycle workers now and then so slow leaks cannot grow forever (the app's own caches are
# bounded); jitter keeps them from all restarting at once. Not too often: a recycled worker
# starts with cold caches, and at 10,000 a busy worker restarted every few seconds.
max_requests = _int_env("RECS_MAX_REQUESTS", 200_000)
max_requests_jitter = max_requests // 10
# Each worker builds its own app: a Redis connection pool must not be shared across fork().
# The modules are imported once in the master instead (on_starting), so a new or recycled
# worker forks with them loaded and starts in milliseconds, not seconds.
preload_app = False
# Heartbeat files on tmpfs: a container's overlay filesystem can stall them into timeouts.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("RECS_LOG_LEVEL", "info")
proc_name = "related-stories"
# gunicorn >= 27 opens a control socket under $HOME; unused here, and the image's user has no
# writable home. (Older versions ignore the name.)
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Start Prometheus multiprocess mode with an empty directory (if in use); import the app."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # Files of a previous run would add its counts to this one's.
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True)
    # Modules only: no app, no connections, no metric files exist before a worker builds them.
    import service  # noqa: F401
    from service import server_errors

    # gunicorn's own 400/414/431 answers (request line or headers over the limits) in JSON.
    server_errors.install()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from Prometheus multiprocess files (if in use)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
