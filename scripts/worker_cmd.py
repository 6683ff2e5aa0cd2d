"""``recs worker``: the one update writer, applying queued upserts and deletes until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from scripts.common import EXIT_REFUSED, CliError
from scripts.connection import connect, writer_errors
from scripts.options import (
    model_dir_option,
    model_root_option,
    redis_url_option,
    replay_margin_option,
)
from scripts.update_apply import model_loader
from service.redis.apply import WriterError
from service.redis.writer import Writer

log = logging.getLogger("recs.worker")


@click.command("worker")
@redis_url_option(
    "Redis holding the update queue and the live version (env RECS_REDIS_URL).",
    required=True,
    envvar="RECS_REDIS_URL",
)
@model_dir_option(
    "Model directory of the live version (env RECS_MODEL_DIR).", envvar="RECS_MODEL_DIR"
)
@model_root_option(
    "Directory of model directories named by version (env RECS_MODEL_ROOT).",
    envvar="RECS_MODEL_ROOT",
)
@replay_margin_option
@click.option("--once", is_flag=True, help="Apply what is queued, then exit.")
def worker_command(
    redis_url: str,
    model_dir: Path | None,
    model_root: Path | None,
    replay_margin: float,
    once: bool,
) -> None:
    """Apply queued upserts and deletes to the live version (the one writer; runs until stopped)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    load = model_loader(model_dir, model_root)
    client = connect(redis_url)

    def log_result(result: dict[str, Any]) -> None:
        log.info(
            "%s %s %s %s: %d list(s)%s",
            result["entry"],
            result["op"],
            result["id"],
            result["status"],
            result["changed"],
            f" ({result['error']})" if result["error"] else "",
        )

    writer = Writer(client, load, replay_margin_s=replay_margin, on_result=log_result)
    stop = threading.Event()
    with _stop_on_signals(stop), writer_errors(redis_url):
        try:
            with writer:
                log.info("update writer started (lock %s)", writer.lock.token)
                writer.run(stop, once=once)
        except WriterError as exc:
            raise CliError(str(exc), EXIT_REFUSED) from None
    log.info("update writer stopped")


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT end the loop after the current update (the lock is then released)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
