"""``recs retrain``: the cron job that trains on a fresh export, checks and publishes it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import click

from models.artifact import read_manifest
from scripts.common import EXIT_REFUSED, EXIT_UNAVAILABLE, CliError
from scripts.connection import connect, publish_errors
from scripts.options import (
    articles_option,
    cluster_options,
    config_file_option,
    keep_option,
    keep_pools_option,
    model_root_option,
    on_error_option,
    published_redis_option,
    tag_aliases_option,
)
from scripts.training import Placement, PlacementError, build_config, train_model
from service.redis import publish as pub
from service.redis import versions


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
@model_root_option(
    "Directory holding one model directory per version (env RECS_MODEL_ROOT).",
    required=True,
    envvar="RECS_MODEL_ROOT",
)
@published_redis_option
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
@cluster_options
@keep_pools_option
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
    cluster_address: str | None,
    local_workers: int | None,
    block_rows: int | None,
    keep_pools: bool,
) -> None:
    """Train on a fresh export, check it against the live version, publish it (cron job)."""
    started = time.perf_counter()
    config = build_config(config_file, tag_aliases, k=k)
    placement = Placement(cluster_address, local_workers, block_rows)
    # Redis first: no point training for a minute if the result cannot be published.
    try:
        client = connect(redis_url)
        with publish_errors("reading the live version", client):
            live = versions.live_info(client)
    except CliError as exc:
        message = f"retrain FAILED: {exc.format_message()}; nothing trained"
        raise Summary(message, exc.exit_code) from None
    untouched = f"live version {live['version']} untouched" if live else "nothing published"

    model_root.mkdir(parents=True, exist_ok=True)
    staging = model_root / f".retrain-{os.getpid()}-{time.time_ns()}"
    try:
        loaded, _ = train_model(
            article_files, staging, config, on_error, placement=placement, keep_pools=keep_pools
        )
    except CliError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        # The Dask cluster or the options naming it, not the export: not a refusal.
        if exc.exit_code == EXIT_UNAVAILABLE or isinstance(exc, PlacementError):
            raise Summary(
                f"retrain FAILED: {_first_line(exc)}; {untouched}", exc.exit_code
            ) from None
        # Any unusable export (empty, bad records) is a refusal: cron must see exit 3.
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
        with publish_errors("publish", client):
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
