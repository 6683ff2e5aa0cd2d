"""``recs upsert``, ``recs delete`` and ``recs worker``: incremental updates from the CLI.

With ``--redis-url`` an update goes through the queue like the API's (service/redis/queue.py): it
is enqueued, then applied by the running ``recs worker`` (the command waits for its acks) or,
when no worker holds the writer lock, by this process itself with the very same Writer code.
Without ``--redis-url`` the model directory is updated in place (no server involved).

Register with ``for command in COMMANDS: cli.add_command(command)``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import redis

from models.artifact import ArtifactError, LoadedModel, load_model
from models.incremental import IncrementalIndex, save_incremental
from models.records import Article, CorpusError, RecordError, read_articles, validate_id
from scripts.common import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    CliError,
    articles_option,
    on_error_option,
)
from scripts.publish_cmd import connect, redact
from service.redis import keys
from service.redis import queue as upd
from service.redis.publish import with_retry
from service.redis.writer import DEFAULT_REPLAY_MARGIN_S, Writer, WriterError

log = logging.getLogger("recs.worker")

DEFAULT_TIMEOUT_S = 30.0

model_dir_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Model directory of the live version (without --redis-url: updated in place).",
)
model_root_option = click.option(
    "--model-root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of model directories named by version (as 'recs retrain' writes them).",
)
replay_margin_option = click.option(
    "--replay-margin",
    type=click.FloatRange(0, None),
    default=DEFAULT_REPLAY_MARGIN_S,
    show_default=True,
    help="Seconds before a version's as_of from which queued updates are replayed onto it.",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0, None),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the running worker to apply the updates.",
)
optional_redis_option = click.option(
    "--redis-url",
    default=None,
    help="Queue the updates in this Redis (no env default: without it the model directory"
    " is updated in place).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")


def model_loader(model_dir: Path | None, model_root: Path | None) -> Callable[[str], LoadedModel]:
    """``version -> LoadedModel`` from ``--model`` (checked) or ``--model-root/<version>``."""
    if (model_dir is None) == (model_root is None):
        raise CliError("give exactly one of --model DIR or --model-root DIR")

    def load(version: str) -> LoadedModel:
        if model_root is not None:
            path = model_root / version
            if not (path / "manifest.json").is_file():
                raise WriterError(
                    f"no model directory for the live version {version} under {model_root}"
                    f" (expected {path}/manifest.json)"
                )
        else:
            assert model_dir is not None
            path = model_dir
        try:
            loaded = load_model(path)
        except (ArtifactError, ValueError, OSError) as exc:
            raise WriterError(str(exc)) from None
        if loaded.version != version:
            raise WriterError(
                f"--model {path} is version {loaded.version}, but the live version is"
                f" {version}: give the live version's model directory, publish this one"
                f" first (recs publish --model {path}), or keep one directory per version"
                " (recs retrain --model-root ROOT writes ROOT/<version>/) and pass"
                " --model-root ROOT instead of --model"
            )
        return loaded

    return load


@dataclass
class Outcome:
    """What one upsert/delete run did."""

    mode: str
    version: str | None
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[RecordError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def applied(self) -> int:
        return sum(r["status"] == "applied" for r in self.results)

    @property
    def rejected(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] != "applied"]

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "version": self.version,
            "applied": self.applied,
            "rejected": len(self.rejected),
            "skipped": len(self.skipped),
            "lists_changed": sum(int(r["changed"]) for r in self.results),
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------------
# Applying through Redis.

Update = tuple[str, str, Article | None]  # (op, id, article)


@contextmanager
def _redis_failures(url: str) -> Iterator[None]:
    try:
        yield
    except WriterError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    except redis.RedisError as exc:
        raise CliError(f"Redis at {redact(url)} failed: {exc}", EXIT_UNAVAILABLE) from None


def _enqueue(client: redis.Redis, updates: Sequence[Update]) -> list[str]:
    entries = []
    for op, article_id, article in updates:
        if op == "upsert":
            assert article is not None
            entries.append(upd.enqueue_upsert(client, article, by="cli"))
        else:
            entries.append(upd.enqueue_delete(client, article_id, by="cli"))
    return entries


def apply_via_redis(
    url: str,
    updates: Sequence[Update],
    load: Callable[[str], LoadedModel],
    *,
    timeout: float,
    replay_margin_s: float,
) -> Outcome:
    """Queue ``updates``; wait for the worker's acks, or be the writer when none runs."""
    started = time.perf_counter()
    client = connect(url)
    try:
        return _apply_via(client, url, updates, load, timeout, replay_margin_s, started)
    finally:
        client.close()


def _apply_via(
    client: redis.Redis,
    url: str,
    updates: Sequence[Update],
    load: Callable[[str], LoadedModel],
    timeout: float,
    replay_margin_s: float,
    started: float,
) -> Outcome:
    with _redis_failures(url):
        version = with_retry(lambda: client.get(keys.CURRENT))
        if version is None:
            raise CliError("nothing is published: publish a model first", EXIT_REFUSED)
        if not upd.writer_active(client):
            collected: dict[str, dict[str, Any]] = {}
            writer = Writer(
                client,
                load,
                replay_margin_s=replay_margin_s,
                on_result=lambda result: collected.__setitem__(result["entry"], result),
            )
            if writer.lock.acquire():
                try:
                    # The model is loaded (and checked against the live version) before
                    # anything is queued: a wrong --model queues nothing.
                    writer.sync()
                    entries = _enqueue(client, updates)
                    writer.run(once=True)
                finally:
                    writer.lock.release()
                results = [collected[e] for e in entries if e in collected]
                return Outcome("writer", writer.version, results, seconds=_since(started))
        # A worker runs (or just took the lock): it applies; we wait for its acks.
        entries = _enqueue(client, updates)
        deadline = time.monotonic() + timeout
        results = []
        for entry in entries:
            result = upd.wait_applied(client, entry, max(0.0, deadline - time.monotonic()))
            if result is None:
                raise CliError(
                    f"timed out after {timeout:g} s waiting for the update worker"
                    f" ({len(results)} of {len(entries)} applied); the rest stay queued and"
                    " are applied when it catches up",
                    EXIT_UNAVAILABLE,
                )
            results.append(result)
    last = results[-1]["version"] if results else _text(version)
    return Outcome("worker", last, results, seconds=_since(started))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _since(started: float) -> float:
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Applying to a model directory (embedded mode).


def apply_in_place(model_dir: Path, updates: Sequence[Update]) -> Outcome:
    """Load the model, apply the updates to its index, save it back over ``model_dir``."""
    started = time.perf_counter()
    try:
        loaded = load_model(model_dir)
    except (ArtifactError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    index = IncrementalIndex.from_model(loaded.model)
    current = {a.id: a for a in loaded.articles}
    results = []
    for op, article_id, article in updates:
        result: dict[str, Any] = {
            "entry": None,
            "op": op,
            "id": article_id,
            "status": "applied",
            "changed": 0,
            "error": None,
            "version": loaded.version,
        }
        if op == "upsert":
            assert article is not None
            # The same rule as the Redis writer: an identical upsert changes nothing.
            if current.get(article_id) != article:
                result["changed"] = len(index.upsert(article))
                current[article_id] = article
        elif article_id in index:
            result["changed"] = len(index.delete(article_id))
            current.pop(article_id)
        else:
            result.update(status="rejected", error="unknown article id")
        results.append(result)
    if index.upserts or index.deletes:
        try:
            save_incremental(index.to_loaded(loaded), model_dir)
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot save the updated model to {model_dir}: {exc}") from None
    return Outcome("model-dir", loaded.version, results, seconds=_since(started))


# ---------------------------------------------------------------------------------------------
# The commands.


def _run(
    updates: Sequence[Update],
    model_dir: Path | None,
    model_root: Path | None,
    redis_url: str | None,
    timeout: float,
    replay_margin: float,
) -> Outcome:
    if redis_url is None:
        if model_dir is None:
            raise CliError("without --redis-url, give --model DIR (the directory to update)")
        return apply_in_place(model_dir, updates)
    load = model_loader(model_dir, model_root)
    return apply_via_redis(redis_url, updates, load, timeout=timeout, replay_margin_s=replay_margin)


def _report(outcome: Outcome, as_json: bool) -> None:
    for error in outcome.skipped[:5]:
        click.echo(f"skipped: {error}", err=True)
    if len(outcome.skipped) > 5:
        click.echo(f"skipped: ... and {len(outcome.skipped) - 5} more bad record(s)", err=True)
    for result in outcome.rejected:
        click.echo(f"rejected: {result['op']} {result['id']}: {result['error']}", err=True)
    summary = outcome.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{summary['applied']:,} applied, {summary['rejected']:,} rejected,"
            f" {summary['lists_changed']:,} lists changed in {summary['seconds']:.2f} s"
            f" (version {summary['version']}, {summary['mode']})"
        )
    if outcome.rejected:
        raise click.exceptions.Exit(EXIT_BAD_INPUT)


@click.command("upsert")
@articles_option("Article file (.jsonl or .csv), new or edited articles; repeat for several.")
@model_dir_option
@model_root_option
@optional_redis_option
@on_error_option("Bad records: stop before queueing anything (exit 2), or skip them.")
@timeout_option
@replay_margin_option
@json_option
def upsert_command(
    article_files: tuple[Path, ...],
    model_dir: Path | None,
    model_root: Path | None,
    redis_url: str | None,
    on_error: str,
    timeout: float,
    replay_margin: float,
    as_json: bool,
) -> None:
    """Add or replace articles in the live version without a retrain."""
    try:
        read = read_articles(article_files, on_error=on_error)  # type: ignore[arg-type]
    except CorpusError as exc:
        raise CliError(str(exc)) from None
    updates: list[Update] = [("upsert", a.id, a) for a in read.articles]
    outcome = _run(updates, model_dir, model_root, redis_url, timeout, replay_margin)
    outcome.skipped = read.errors
    _report(outcome, as_json)


@click.command("delete")
@click.argument("ids", nargs=-1, required=True)
@model_dir_option
@model_root_option
@optional_redis_option
@timeout_option
@replay_margin_option
@json_option
def delete_command(
    ids: tuple[str, ...],
    model_dir: Path | None,
    model_root: Path | None,
    redis_url: str | None,
    timeout: float,
    replay_margin: float,
    as_json: bool,
) -> None:
    """Remove articles from their own key and from every list they are in."""
    for article_id in ids:
        try:
            validate_id(article_id, source="argument")
        except RecordError as exc:
            raise CliError(str(exc)) from None
    updates: list[Update] = [("delete", i, None) for i in dict.fromkeys(ids)]
    _report(_run(updates, model_dir, model_root, redis_url, timeout, replay_margin), as_json)


@click.command("worker")
@click.option(
    "--redis-url",
    required=True,
    envvar="RECS_REDIS_URL",
    help="Redis holding the update queue and the live version (env RECS_REDIS_URL).",
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    envvar="RECS_MODEL_DIR",
    help="Model directory of the live version (env RECS_MODEL_DIR).",
)
@click.option(
    "--model-root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    envvar="RECS_MODEL_ROOT",
    help="Directory of model directories named by version (env RECS_MODEL_ROOT).",
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
    with _stop_on_signals(stop), _redis_failures(redis_url):
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


COMMANDS: list[click.Command] = [upsert_command, delete_command, worker_command]
