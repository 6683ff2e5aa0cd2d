"""Loading and training models for the commands (train, retrain, publish, related, ...).

No click commands here: scripts/cli.py (``recs train``) and scripts/retrain_cmd.py share these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click

from models.artifact import ArtifactError, LoadedModel, load_model, save_model
from models.blocks import InProcess, NeighbourRunner
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import CorpusError, read_articles
from models.tags import load_aliases
from models.topk import default_threads
from scripts.common import EXIT_UNAVAILABLE, CliError, progress_bar

DASK_MISSING = (
    "--cluster/--workers need Dask, which is not installed: pip install 'related-stories[dask]'"
)


class PlacementError(CliError):
    """A ``--cluster``/``--workers`` choice that cannot be used as given (exit 2, the option
    named): ``recs retrain`` reports it as a failed option, not as a refused export."""


@dataclass(frozen=True)
class Placement:
    """Where the neighbour blocks run: ``--cluster ADDRESS``, ``--workers N`` or in process."""

    address: str | None = None
    workers: int | None = None
    block_rows: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None and self.workers is not None:
            raise PlacementError("give --cluster (or RECS_DASK_SCHEDULER) or --workers, not both")
        if self.address is not None and not self.address.strip():
            raise PlacementError("--cluster: the scheduler address is empty")
        cores = default_threads()
        if self.workers is not None and self.workers > cores:
            # Each worker holds the whole matrix and its postings: more worker processes than
            # cores multiply the memory and oversubscribe the cores for no speed.
            raise PlacementError(
                f"--workers: {self.workers} worker processes on {cores} usable core(s);"
                f" give at most {cores} (more machines: --cluster)"
            )

    @property
    def distributed(self) -> bool:
        return self.address is not None or self.workers is not None


@contextmanager
def neighbour_runner(placement: Placement) -> Iterator[NeighbourRunner]:
    """The runner for ``placement``; a cluster is connected (or started) for the block only.

    A cluster that cannot be reached or is lost becomes exit 4 (nothing is written: the model
    directory is saved only after every block is in). Without a cluster, dask is not imported.
    """
    if not placement.distributed:
        yield InProcess(placement.block_rows) if placement.block_rows else InProcess()
        return
    try:
        from models import cluster
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"dask", "distributed"}:
            raise PlacementError(DASK_MISSING) from None
        raise
    try:
        with cluster.connect(placement.address, placement.workers) as client:
            yield cluster.ClusterRunner(client, placement.block_rows)
    except cluster.ClusterUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except cluster.BadSchedulerAddress as exc:
        raise PlacementError(f"--cluster: {exc}") from None


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
    placement: Placement | None = None,
    keep_pools: bool = False,
) -> tuple[LoadedModel, dict[str, object]]:
    """Read, fit and save; return the saved model and a summary (shared with retrain).

    ``as_of`` (default: :func:`input_as_of`) is stored as the manifest's ``source_as_of``.
    ``placement``: where the neighbour blocks run (default: in this process).
    ``keep_pools``: also save the candidate pools (``recs train --keep-pools``).
    """
    started = time.perf_counter()
    # The cluster first: no point reading a large export if its scheduler is unreachable.
    with neighbour_runner(placement or Placement()) as runner:
        return _train(article_files, out, config, on_error, as_of, runner, started, keep_pools)


def _train(
    article_files: tuple[Path, ...],
    out: Path,
    config: ModelConfig,
    on_error: str,
    as_of: datetime | None,
    runner: NeighbourRunner,
    started: float,
    keep_pools: bool,
) -> tuple[LoadedModel, dict[str, object]]:
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
        model = RelatedModel(config=config).fit(
            result.articles, progress=progress_bar, runner=runner, keep_pools=keep_pools
        )
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
