"""Loading and training models for the commands (train, retrain, publish, related, ...).

No click commands here: scripts/cli.py (``recs train``) and scripts/retrain_cmd.py share these.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from models.artifact import ArtifactError, LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import CorpusError, read_articles
from models.tags import load_aliases
from scripts.common import CliError, progress_bar


def open_model(path: Path) -> LoadedModel:
    """Load a model directory or fail with a clear message."""
    try:
        return load_model(path)
    except (ArtifactError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


def parse_as_of(value: str) -> datetime:
    """``--as-of`` as an aware UTC datetime (a naive time means UTC), or a CliError."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(f"--as-of: {value[:40]!r} is not an ISO-8601 date/time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def build_config(
    config_file: Path | None, aliases: Path | None, **overrides: object
) -> ModelConfig:
    """The model config: defaults, then the config file, then command-line overrides."""
    try:
        config = ModelConfig.from_file(config_file) if config_file else ModelConfig()
        changes = {key: value for key, value in overrides.items() if value is not None}
        if aliases is not None:
            changes["tag_aliases"] = load_aliases(aliases)
        return config.replace(**changes) if changes else config
    except ValueError as exc:
        raise CliError(str(exc)) from None


def input_as_of(article_files: tuple[Path, ...]) -> datetime | None:
    """When the input was read, conservatively: the earliest modification time of its files.

    Updates queued after this (minus the writer's margin) are replayed onto the new version.
    """
    try:
        stamps = [path.stat().st_mtime for path in article_files]
    except OSError:
        return None  # read_articles reports the missing file
    return datetime.fromtimestamp(min(stamps), UTC) if stamps else None


def train_model(
    article_files: tuple[Path, ...],
    out: Path,
    config: ModelConfig,
    on_error: str,
    *,
    as_of: datetime | None = None,
) -> tuple[LoadedModel, dict[str, object]]:
    """Read, fit and save; return the saved model and a summary (shared with retrain).

    ``as_of`` (default: :func:`input_as_of`) is stored as the manifest's ``source_as_of``.
    """
    started = time.perf_counter()
    as_of = as_of or input_as_of(article_files)
    try:
        result = read_articles(article_files, on_error=on_error)  # type: ignore[arg-type]
    except CorpusError as exc:
        raise CliError(str(exc)) from None
    for error in result.errors[:5]:
        click.echo(f"skipped: {error}", err=True)
    if result.skipped > 5:
        click.echo(f"skipped: ... and {result.skipped - 5} more bad record(s)", err=True)
    try:
        model = RelatedModel(config=config).fit(result.articles, progress=progress_bar)
        manifest = save_model(model, result.articles, out, source_as_of=as_of)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    counts = manifest["counts"]
    summary: dict[str, object] = {
        "version": manifest["version"],
        "articles": counts["articles"],
        "skipped": result.skipped,
        "vocabulary": counts["vocabulary"],
        "tags": counts["tags"],
        "articles_with_tags": counts["articles_with_tags"],
        "coverage": counts["coverage"],
        "k": counts["k"],
        "seconds": round(time.perf_counter() - started, 2),
        "out": str(out),
    }
    # The fitted model is what was saved: no need to read it back (15 s at 200k articles).
    return LoadedModel(model=model, manifest=manifest, articles=result.articles, path=out), summary
