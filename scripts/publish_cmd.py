"""``recs publish``, ``rollback``, ``versions`` and ``retrain``: the Redis side of the CLI.

Register with ``for command in COMMANDS: cli.add_command(command)``. ``scripts.cli`` is
imported inside the commands, not at module level, so cli.py can import this module at its top.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.artifact import LoadedModel, read_manifest
from scripts.common import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    CliError,
    articles_option,
    config_file_option,
    model_option,
    on_error_option,
    tag_aliases_option,
)
from service.redis import publish as pub
from service.redis import versions
from service.redis.client import with_retry

# Publishing sends big pipelines: allow more than the API's 0.5 s per reply.
PUBLISH_SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 2.0

redis_url_option = click.option(
    "--redis-url",
    required=True,
    envvar="RECS_REDIS_URL",
    help="Redis to publish to, e.g. redis://localhost:6379/0 (env RECS_REDIS_URL).",
)
keep_option = click.option(
    "--keep",
    type=click.IntRange(1, None),
    default=pub.DEFAULT_KEEP,
    show_default=True,
    help="Published versions to keep (the live one and the one before it are always kept).",
)


def redact(url: str) -> str:
    """``url`` with any password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def connect(url: str) -> redis.Redis:
    """A checked connection to ``url`` or a one-line CliError (exit 4 when unreachable)."""
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=PUBLISH_SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            # service.redis.publish retries with backoff itself; client retries would multiply.
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise CliError(f"invalid --redis-url {redact(url)!r}: {exc}", EXIT_BAD_INPUT) from None
    try:
        with_retry(client.ping)
    except redis.RedisError as exc:
        raise CliError(
            f"cannot reach Redis at {redact(url)}: {_one_line(exc)}", EXIT_UNAVAILABLE
        ) from None
    return client


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextmanager
def redis_errors(action: str, client: redis.Redis) -> Iterator[None]:
    """Turn Redis and publish failures into one-line CliErrors naming the live version."""
    try:
        yield
    except pub.PublishError as exc:
        raise CliError(f"{action} refused: {exc}", EXIT_REFUSED) from None
    except redis.RedisError as exc:
        raise CliError(
            f"{action} failed: {_one_line(exc)}; {_live_note(client)}", EXIT_UNAVAILABLE
        ) from None


def _live_note(client: redis.Redis) -> str:
    try:
        live = versions.current_version(client)
    except redis.RedisError:
        return "the live version was not changed"
    return f"live version {live} untouched" if live else "nothing was published"


def publish_after_train(
    loaded: LoadedModel,
    url: str,
    *,
    keep: int = pub.DEFAULT_KEEP,
    echo: bool = True,
    batch: int = pub.BATCH_SIZE,
) -> pub.PublishResult:
    """Publish a trained model, printing one line unless ``echo`` is off (``train --publish``)."""
    client = connect(url)
    try:
        with redis_errors("publish", client):
            result = pub.publish(client, loaded, keep=keep, batch=batch)
    finally:
        client.close()
    if echo:
        click.echo(_published_line(result))
    return result


def _published_line(result: pub.PublishResult) -> str:
    if result.already_published and result.previous is None:
        return f"{result.version} is already the live version; nothing to do"
    extras = [f"previous {result.previous or 'none'}"]
    if result.pruned:
        extras.append(f"pruned {', '.join(result.pruned)}")
    if result.cleaned:
        extras.append(f"cleaned partial {', '.join(result.cleaned)}")
    return (
        f"published {result.version}: {result.articles:,} articles in {result.seconds:.1f} s"
        f" ({'; '.join(extras)})"
    )


@click.command("publish")
@model_option
@redis_url_option
@keep_option
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=pub.BATCH_SIZE,
    show_default=True,
    help="Articles per pipeline: smaller batches block Redis for less time each.",
)
def publish_command(model_dir: Path, redis_url: str, keep: int, batch_size: int) -> None:
    """Write a model version to Redis and make it live (the previous one stays for rollback)."""
    from scripts.cli import open_model

    loaded = open_model(model_dir)
    publish_after_train(loaded, redis_url, keep=keep, batch=batch_size)


@click.command("rollback")
@redis_url_option
@click.option("--to", "target", help="Version to make live (default: the one before the live one).")
def rollback_command(redis_url: str, target: str | None) -> None:
    """Make the previous published version live again."""
    client = connect(redis_url)
    with redis_errors("rollback", client):
        try:
            old, new = pub.rollback(client, target)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    click.echo(f"rolled back: {new} is live (was {old})")


@click.command("versions")
@redis_url_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--retrain-drift",
    type=click.FloatRange(0, 100, min_open=True),
    default=0.1,
    show_default=True,
    envvar="RECS_RETRAIN_DRIFT",
    help="Share of incremental upserts + deletes (of the build's articles) at which a version"
    " is marked as due for a full retrain (env RECS_RETRAIN_DRIFT).",
)
def versions_command(redis_url: str, as_json: bool, retrain_drift: float) -> None:
    """List published versions, newest first; '*' marks the live one.

    Versions changed by incremental updates also show their upserts, deletes and drift (their
    share of the build's articles; '!' marks a retrain as due, see docs/incremental.md).
    """
    client = connect(redis_url)
    with redis_errors("versions", client):
        rows = versions.list_versions(client, drift_threshold=retrain_drift)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.__dict__))
        return
    if not rows:
        click.echo("no published versions")
        return
    # The update columns only when some version has updates: a plain listing stays as it was.
    updated = any(row.upserts or row.deletes for row in rows)
    width = max(len("VERSION"), *(len(r.version) for r in rows))
    header = f"  {'VERSION':<{width}}  {'BUILT':<20}  {'PUBLISHED':<20}  {'ARTICLES':>9}   K"
    if updated:
        header += f"  {'UPSERTS':>8}  {'DELETES':>8}  {'DRIFT':>7}"
    click.echo(header)
    for row in rows:
        mark = "*" if row.current else " "
        line = (
            f"{mark} {row.version:<{width}}  {row.built_at:<20}  {row.published_at or '-':<20}"
            f"  {row.articles:>9,}  {row.k:>2}"
        )
        if updated:
            due = "!" if row.retrain_due else " "
            line += f"  {row.upserts:>8,}  {row.deletes:>8,}  {row.drift:>6.1%}{due}"
        click.echo(line)


# ---------------------------------------------------------------------------------------------
# retrain: the cron job.


def check_new_model(
    new: dict[str, Any], live: dict[str, Any] | None, max_shrink: float, max_coverage_drop: float
) -> str | None:
    """Why a new model looks broken next to the live one (None when it looks fine)."""
    if live is None:
        return None
    new_n, live_n = int(new["articles"]), int(live.get("articles", 0))
    if live_n > 0:
        shrink = 1.0 - new_n / live_n
        if shrink > max_shrink:
            return (
                f"corpus shrank {shrink:.1%} ({new_n:,} vs {live_n:,} live; limit {max_shrink:.0%})"
            )
    live_coverage = live.get("coverage")
    if live_coverage is not None:
        drop = float(live_coverage) - float(new["coverage"])
        if drop > max_coverage_drop:
            return (
                f"coverage fell {drop * 100:.1f} points ({float(new['coverage']):.1%} vs"
                f" {float(live_coverage):.1%} live; limit {max_coverage_drop * 100:.0f} points)"
            )
    return None


def prune_model_dirs(root: Path, keep: int, protected: set[str]) -> list[Path]:
    """Delete model directories under ``root`` beyond the ``keep`` newest, except ``protected``."""
    found = []
    for child in root.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        try:
            version = str(read_manifest(child)["version"])
        except (ValueError, OSError):
            continue  # not a model directory: not ours to delete
        # Version ids start with their UTC build time to the second; builds within one second
        # are ordered by when their manifest was written.
        written = (child / "manifest.json").stat().st_mtime_ns
        found.append((version[:16], written, version, child))
    found.sort(key=lambda item: item[:2], reverse=True)
    removed = []
    for position, (_, _, version, path) in enumerate(found):
        if position < keep or version in protected:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class Summary(click.ClickException):
    """A retrain that ends without publishing: its one summary line on stderr, no prefix."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True, file=file)


@click.command("retrain")
@articles_option("Article export (.jsonl or .csv); repeat for several.")
@click.option(
    "--model-root",
    required=True,
    envvar="RECS_MODEL_ROOT",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory holding one model directory per version (env RECS_MODEL_ROOT).",
)
@redis_url_option
@click.option(
    "--max-shrink",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Refuse if the corpus shrank by more than this share of the live one.",
)
@click.option(
    "--max-coverage-drop",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Refuse if coverage fell by more than this (0.1 = 10 points).",
)
@click.option("--force", is_flag=True, help="Publish even if the new model looks broken.")
@keep_option
@click.option("--k", type=click.IntRange(1, 1000), default=None, help="Neighbours per article.")
@config_file_option
@tag_aliases_option
@on_error_option("Bad records: refuse the export, or skip and count them.")
def retrain_command(
    article_files: tuple[Path, ...],
    model_root: Path,
    redis_url: str,
    max_shrink: float,
    max_coverage_drop: float,
    force: bool,
    keep: int,
    k: int | None,
    config_file: Path | None,
    tag_aliases: Path | None,
    on_error: str,
) -> None:
    """Train on a fresh export, check it against the live version, publish it (cron job)."""
    from scripts.cli import build_config, train_model

    started = time.perf_counter()
    config = build_config(config_file, tag_aliases, k=k)
    # Redis first: no point training for a minute if the result cannot be published.
    try:
        client = connect(redis_url)
        with redis_errors("reading the live version", client):
            live = versions.live_info(client)
    except CliError as exc:
        message = f"retrain FAILED: {exc.format_message()}; nothing trained"
        raise Summary(message, exc.exit_code) from None
    untouched = f"live version {live['version']} untouched" if live else "nothing published"

    model_root.mkdir(parents=True, exist_ok=True)
    staging = model_root / f".retrain-{os.getpid()}-{time.time_ns()}"
    try:
        loaded, _ = train_model(article_files, staging, config, on_error)
    except CliError as exc:
        # Any unusable export (empty, bad records) is a refusal: cron must see exit 3.
        shutil.rmtree(staging, ignore_errors=True)
        raise Summary(
            f"retrain REFUSED: cannot train on the export: {_first_line(exc)}; {untouched}"
        ) from None
    final = model_root / loaded.version
    if final.exists():
        shutil.rmtree(staging, ignore_errors=True)  # the very same model was built before
    else:
        os.replace(staging, final)
    loaded.path = final

    counts = loaded.manifest["counts"]
    problem = check_new_model(counts, live, max_shrink, max_coverage_drop)
    if problem and not force:
        raise Summary(
            f"retrain REFUSED: {problem}; {untouched}; new model kept unpublished at {final}"
        )
    try:
        with redis_errors("publish", client):
            result = pub.publish(client, loaded, keep=keep)
            listed = {row.version for row in versions.list_versions(client)}
    except CliError as exc:
        raise Summary(
            f"retrain FAILED: {exc.format_message()}; new model kept unpublished at {final}",
            exc.exit_code,
        ) from None
    prune_model_dirs(model_root, keep, listed | {result.version})

    was = f"{int(live['articles']):,}" if live else "none"
    forced = " (forced: " + problem + ")" if problem else ""
    click.echo(
        f"retrain OK: published {result.version} ({result.articles:,} articles,"
        f" coverage {float(counts['coverage']):.1%}, was {was}) in"
        f" {time.perf_counter() - started:.1f} s{forced}"
    )


def _first_line(exc: click.ClickException) -> str:
    lines = exc.format_message().splitlines()
    return lines[0].rstrip(":") if lines else "unknown error"


COMMANDS: list[click.Command] = [
    publish_command,
    rollback_command,
    versions_command,
    retrain_command,
]
