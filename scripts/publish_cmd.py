"""``recs publish``, ``rollback`` and ``versions``: model versions in Redis.

``recs retrain`` (scripts/retrain_cmd.py) and ``recs train --publish`` publish through
:func:`publish_after_train`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from models.artifact import LoadedModel
from scripts.common import CliError
from scripts.connection import connect, publish_errors
from scripts.options import json_option, keep_option, model_option, published_redis_option
from scripts.training import open_model
from service.redis import publish as pub
from service.redis import versions


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
        with publish_errors("publish", client):
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
@published_redis_option
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
    loaded = open_model(model_dir)
    publish_after_train(loaded, redis_url, keep=keep, batch=batch_size)


@click.command("rollback")
@published_redis_option
@click.option("--to", "target", help="Version to make live (default: the one before the live one).")
def rollback_command(redis_url: str, target: str | None) -> None:
    """Make the previous published version live again."""
    client = connect(redis_url)
    with publish_errors("rollback", client):
        try:
            old, new = pub.rollback(client, target)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    click.echo(f"rolled back: {new} is live (was {old})")


@click.command("versions")
@published_redis_option
@json_option("One JSON object per line.")
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
    with publish_errors("versions", client):
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
