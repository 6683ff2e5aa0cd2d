"""``recs import``: turn a public news dataset into an article JSON Lines file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from models.importers import ImportStats, iter_mind, iter_reuters
from models.records import Article, CorpusError, OnError, RecordError, write_articles_jsonl
from scripts.common import CliError
from scripts.options import on_error_option

# How many skipped records a summary quotes; the rest are only counted.
SHOWN_SKIPPED = 5


import_group = click.Group(
    "import",
    help="Import a public news dataset (Reuters-21578, MIND) as an article JSON Lines file.",
)

output_option = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Article file to write (.jsonl); replaced only when the import succeeds.",
)
on_malformed_option = on_error_option(
    "On a malformed document: stop with an error, or skip it and report it."
)


@import_group.command("reuters")
@click.argument("directory", type=click.Path(path_type=Path))
@output_option
@on_malformed_option
@click.option("--with-body", is_flag=True, help="Keep only articles that have a body.")
@click.option(
    "--with-topics", is_flag=True, help="Keep only articles with at least one TOPICS category."
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Keep every N-th article left after the filters (a sample spanning the whole period).",
)
def reuters_command(
    directory: Path,
    output: Path,
    on_error: OnError,
    with_body: bool,
    with_topics: bool,
    every: int,
) -> None:
    """Import the Reuters-21578 reut2-*.sgm files in DIRECTORY."""
    started = time.perf_counter()
    stats = ImportStats()
    with _dataset_errors():
        articles: Iterable[Article] = iter_reuters(directory, on_error=on_error, stats=stats)
        if with_body:
            articles = (article for article in articles if article.body)
        if with_topics:
            articles = (article for article in articles if article.extra.get("topics"))
        if every > 1:
            articles = (article for index, article in enumerate(articles) if index % every == 0)
        written, without_body = _write(articles, output, stats)
    filters = [
        flag for flag, on in (("--with-body", with_body), ("--with-topics", with_topics)) if on
    ]
    if every > 1:
        filters.append(f"--every {every}")
    notes = []
    if stats.skipped_empty:
        notes.append(f"skipped {stats.skipped_empty:,} without title or body")
    if stats.bad_dates:
        notes.append(f"{stats.bad_dates:,} unreadable DATE left empty")
    _summary(written, without_body, stats, output, started, filters, notes)


@import_group.command("mind")
@click.argument("news_tsv", type=click.Path(path_type=Path))
@output_option
@on_malformed_option
def mind_command(news_tsv: Path, output: Path, on_error: OnError) -> None:
    """Import a MIND news.tsv file (NEWS_TSV)."""
    started = time.perf_counter()
    stats = ImportStats()
    with _dataset_errors():
        written, without_body = _write(
            iter_mind(news_tsv, on_error=on_error, stats=stats), output, stats
        )
    notes = []
    if stats.bad_entities:
        notes.append(f"{stats.bad_entities:,} unreadable entity lists ignored")
    _summary(written, without_body, stats, output, started, [], notes)


@contextmanager
def _dataset_errors() -> Iterator[None]:
    """Turn a bad dataset, found at the start or while reading, into a clean command failure."""
    try:
        yield
    except (CorpusError, RecordError) as exc:
        raise CliError(str(exc)) from None


def _write(articles: Iterable[Article], output: Path, stats: ImportStats) -> tuple[int, int]:
    """Write ``articles`` to ``output`` through a temporary file; return (written, bodiless)."""
    without_body = 0

    def counted() -> Iterator[Article]:
        nonlocal without_body
        for article in articles:
            without_body += not article.body
            yield article

    partial = output.with_name(f".{output.name}.partial")
    try:
        written = write_articles_jsonl(counted(), partial)
        if written == 0:
            first = f"; first skipped: {stats.errors[0]}" if stats.errors else ""
            raise CliError(f"no articles to write, {output} left unchanged{first}")
        # Replace the old file only now, so a failed import never leaves a truncated corpus.
        os.replace(partial, output)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return written, without_body


def _summary(
    written: int,
    without_body: int,
    stats: ImportStats,
    output: Path,
    started: float,
    filters: list[str],
    notes: list[str],
) -> None:
    seconds = time.perf_counter() - started
    kept = f"; kept of {stats.imported:,} by {' '.join(filters)}" if filters else ""
    line = (
        f"imported {written:,} articles ({without_body:,} without body{kept})"
        f" -> {output} in {seconds:.1f} s"
    )
    if stats.errors:
        notes.append(f"skipped {len(stats.errors):,} bad record(s)")
    click.echo(line + "".join(f"; {note}" for note in notes), err=True)
    for error in stats.errors[:SHOWN_SKIPPED]:
        click.echo(f"  skipped {error}", err=True)
    if len(stats.errors) > SHOWN_SKIPPED:
        click.echo(f"  ... and {len(stats.errors) - SHOWN_SKIPPED:,} more", err=True)


if __name__ == "__main__":
    import_group()
