"""How ``recs upsert`` and ``recs delete`` apply their updates, and what they report.

With ``--redis-url`` an update goes through the queue like the API's (service/redis/queue.py): it
is enqueued, then applied by the running ``recs worker`` (the command waits for its acks) or,
when no worker holds the writer lock, by this process itself with the very same Writer code.
Without ``--redis-url`` the model directory is updated in place (no server involved).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.artifact import ArtifactError, LoadedModel, load_model
from models.incremental import IncrementalIndex, save_incremental
from models.records import Article, RecordError
from scripts.common import EXIT_REFUSED, EXIT_UNAVAILABLE, CliError
from scripts.connection import connect, writer_errors
from service.redis import queue as upd
from service.redis import versions
from service.redis.apply import WriterError
from service.redis.client import Client
from service.redis.writer import Writer

Update = tuple[str, str, Article | None]  # (op, id, article)


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


def _enqueue(client: Client, updates: Sequence[Update]) -> list[str]:
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
    client: Client,
    url: str,
    updates: Sequence[Update],
    load: Callable[[str], LoadedModel],
    timeout: float,
    replay_margin_s: float,
    started: float,
) -> Outcome:
    with writer_errors(url):
        version = versions.current_version(client)
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
    last = results[-1]["version"] if results else version
    return Outcome("worker", last, results, seconds=_since(started))


def _since(started: float) -> float:
    return time.perf_counter() - started


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
