"""The README and docs/architecture.md stay true to the tree, the CLI and the Redis layout."""

from __future__ import annotations

import re

import click

from scripts.cli import cli
from service.redis import keys
from tests.paths import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else None]


def _synopsis() -> dict[str, set[str]]:
    """Each command of the README's CLI synopsis with the options written after it."""
    block = _section(README, "## Command line").split("```")[1]
    found: dict[str, set[str]] = {}
    command = ""
    for line in block.splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        if words[0] == "recs":
            # Groups (recs import ..., recs rules ...) name their subcommand too.
            command = " ".join(words[1:3] if words[1] in ("import", "rules") else words[1:2])
            found.setdefault(command, set())
        found[command] |= {w.strip("[]()|").split("=")[0] for w in words if "--" in w}
    return found


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.update(_commands(command, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = command
    return found


def test_readme_synopsis_names_every_command_and_only_real_options() -> None:
    commands = _commands(cli)
    synopsis = _synopsis()
    assert set(synopsis) == set(commands)
    for name, written in synopsis.items():
        real = {opt for param in commands[name].params for opt in param.opts}
        assert written <= real, (name, written - real)


def test_readme_package_table_matches_the_tree() -> None:
    table = _section(README, "## Architecture")
    paths = re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)?", table, re.MULTILINE)
    named = [path for row in paths for path in row if path]
    assert "benchmarks/" in named and "models/tagnorm.py" in named
    for path in named:
        # `models/ranking` names a module or a package alike.
        candidates = (
            [REPO / path]
            if "." in path or path.endswith("/")
            else [
                REPO / f"{path}.py",
                REPO / path / "__init__.py",
            ]
        )
        assert any(candidate.exists() for candidate in candidates), path


def test_architecture_lists_every_redis_key() -> None:
    documented = {
        line.split()[0]
        for line in (keys.__doc__ or "").splitlines()
        if line.strip().startswith("rs:")
    }
    assert len(documented) > 10
    table = _section(ARCHITECTURE, "## The Redis layout")
    for key in documented:
        assert f"`{key}`" in table, key
