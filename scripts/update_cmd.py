"""``recs upsert`` and ``recs delete``: incremental updates from the CLI.

How they are applied (through Redis, or to a model directory in place) is in
scripts/update_apply.py; ``recs worker`` (scripts/worker_cmd.py) applies what they queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from models.records import CorpusError, RecordError, read_articles, validate_id
from scripts.common import EXIT_BAD_INPUT, CliError
from scripts.options import (
    articles_option,
    json_option,
    model_dir_option,
    model_root_option,
    on_error_option,
    redis_url_option,
    replay_margin_option,
)
from scripts.update_apply import Outcome, Update, apply_in_place, apply_via_redis, model_loader

DEFAULT_TIMEOUT_S = 30.0

live_model_option = model_dir_option(
    "Model directory of the live version (without --redis-url: updated in place)."
)
live_model_root_option = model_root_option(
    "Directory of model directories named by version (as 'recs retrain' writes them)."
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0, None),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the running worker to apply the updates.",
)
queue_redis_option = redis_url_option(
    "Queue the updates in this Redis (no env default: without it the model directory"
    " is updated in place)."
)
summary_json_option = json_option("Print the summary as JSON.")


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
@live_model_option
@live_model_root_option
@queue_redis_option
@on_error_option("Bad records: stop before queueing anything (exit 2), or skip them.")
@timeout_option
@replay_margin_option
@summary_json_option
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
@live_model_option
@live_model_root_option
@queue_redis_option
@timeout_option
@replay_margin_option
@summary_json_option
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
