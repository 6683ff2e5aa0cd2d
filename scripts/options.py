"""The click options that several ``recs`` commands share, so each flag reads the same everywhere.

Factories take the help text (and whether the flag is required or read from the environment)
where commands differ: ``recs upsert --redis-url`` has no environment default on purpose (without
it the model directory is updated in place), while ``recs publish`` reads ``RECS_REDIS_URL``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from service.redis.publish import DEFAULT_KEEP
from service.redis.writer import DEFAULT_REPLAY_MARGIN_S

# What click.option returns: it adds the option to the command function it decorates.
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def model_dir_option(
    help_text: str, *, required: bool = False, envvar: str | None = None
) -> Decorator:
    """``--model DIR`` (a model directory, passed as ``model_dir``)."""
    return click.option(
        "--model",
        "model_dir",
        required=required,
        envvar=envvar,
        type=click.Path(path_type=Path),
        help=help_text,
    )


# The model every read-only command (related, similarity, evaluate, publish) works on.
model_option = model_dir_option(
    "Model directory written by 'recs train' (env RECS_MODEL_DIR).",
    required=True,
    envvar="RECS_MODEL_DIR",
)


def model_root_option(
    help_text: str, *, required: bool = False, envvar: str | None = None
) -> Decorator:
    """``--model-root DIR``: one model directory per version, named by the version id."""
    return click.option(
        "--model-root",
        required=required,
        envvar=envvar,
        type=click.Path(path_type=Path, file_okay=False),
        help=help_text,
    )


def redis_url_option(
    help_text: str, *, required: bool = False, envvar: str | None = None
) -> Decorator:
    """``--redis-url URL``; connect to it with :func:`scripts.connection.connect`."""
    return click.option("--redis-url", required=required, envvar=envvar, help=help_text)


# Every command that writes or lists published versions (publish, rollback, versions, retrain).
published_redis_option = redis_url_option(
    "Redis to publish to, e.g. redis://localhost:6379/0 (env RECS_REDIS_URL).",
    required=True,
    envvar="RECS_REDIS_URL",
)


def json_option(help_text: str) -> Decorator:
    """``--json`` (passed as ``as_json``) with a command-specific help text."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def articles_option(help_text: str) -> Decorator:
    """``--articles FILE`` (repeatable, required) with a command-specific help text."""
    return click.option(
        "--articles",
        "article_files",
        required=True,
        multiple=True,
        type=click.Path(path_type=Path),
        help=help_text,
    )


def on_error_option(help_text: str) -> Decorator:
    """``--on-error fail|skip`` with a command-specific help text."""
    return click.option(
        "--on-error",
        type=click.Choice(["fail", "skip"]),
        default="fail",
        show_default=True,
        help=help_text,
    )


# Options shared by every command that trains (train, retrain).
config_file_option = click.option(
    "--config", "config_file", type=click.Path(path_type=Path), help="JSON config file."
)
tag_aliases_option = click.option(
    "--tag-aliases", type=click.Path(path_type=Path), help="Alias file: 'old -> new' lines."
)

# Every command that publishes (publish, retrain).
keep_option = click.option(
    "--keep",
    type=click.IntRange(1, None),
    default=DEFAULT_KEEP,
    show_default=True,
    help="Published versions to keep (the live one and the one before it are always kept).",
)

# Every command that may run the update writer (upsert, delete, worker).
replay_margin_option = click.option(
    "--replay-margin",
    type=click.FloatRange(0, None),
    default=DEFAULT_REPLAY_MARGIN_S,
    show_default=True,
    help="Seconds before a version's as_of from which queued updates are replayed onto it.",
)

# Every command that trains (train, retrain): where the neighbour blocks run.
cluster_option = click.option(
    "--cluster",
    "cluster_address",
    metavar="tcp://HOST:8786",
    envvar="RECS_DASK_SCHEDULER",
    default=None,
    help="Compute the neighbours on this running Dask scheduler (env RECS_DASK_SCHEDULER;"
    " needs pip install 'related-stories[dask]').",
)
workers_option = click.option(
    "--workers",
    "local_workers",
    type=click.IntRange(1, 1024),
    default=None,
    help="Compute the neighbours on a local Dask cluster of N worker processes, started for"
    " this build and stopped after it.",
)
block_rows_option = click.option(
    "--block-rows",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Rows per neighbour block (one task each on a cluster) [cluster: ~16 blocks per"
    " worker thread, 256-4096; in process: 4096]. Never changes the lists.",
)


keep_pools_option = click.option(
    "--keep-pools",
    is_flag=True,
    help="Also save every article's exact candidate pool (pools.npz, ~12 bytes x 125 per"
    " article), so that recs worker starts on this model without its own exact pass (which"
    " takes about as long as the build). Never changes the lists.",
)


def cluster_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--cluster``, ``--workers`` and ``--block-rows`` (see :func:`scripts.training.runner`)."""
    for option in (block_rows_option, workers_option, cluster_option):
        command = option(command)
    return command
