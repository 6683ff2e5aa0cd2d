"""What every ``recs`` command shares: the error type, exit codes and progress bars.

Their click options are in scripts/options.py, the Redis connection in scripts/connection.py.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import click
from tqdm import tqdm

# Exit codes, documented in the README: cron wrappers branch on them.
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4


class CliError(click.ClickException):
    """A user-facing failure: one ``error: ...`` line on stderr and a non-zero exit."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        # click declares exit_code on the class; one error type with a per-instance code keeps
        # every command's failures in one shape.
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def progress_bar(description: str, total: int) -> tqdm:
    """A progress bar on stderr, shown only on a terminal (cron mail stays clean)."""
    return tqdm(
        total=total,
        desc=description,
        unit="art",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )
