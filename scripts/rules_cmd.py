"""``recs rules``: the editorial rules in Redis, from a shell or a git hook.

``export`` prints the file ``import`` takes back (``{"seq": N, "rules": {ID: rule}}``), which
is also the format of embedded mode's ``RECS_RULES_FILE``: keep the rules in git and
``recs rules import rules.json`` replaces the whole set in one transaction. Every change is in
the audit log (``recs rules log``) with ``--by`` (default ``$USER``) as its author. Bad input
exits 2 naming the file and the field, an unreachable Redis 4 (README, "Exit codes").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from models import jsonsafe
from scripts.common import EXIT_UNAVAILABLE, CliError
from scripts.connection import connect, redact
from scripts.options import json_option, redis_url_option
from service.redis.client import RedisUnavailable
from service.redis.store import RedisStore
from service.rules.schema import (
    RuleError,
    check_editor,
    check_rule_id,
    rule_state,
    stored_rule,
    strip_server_fields,
    utc_stamp,
    validate_document,
    validate_rule,
)

# A rules file is data an editor writes: far below this (as service/rules/file.py).
MAX_FILE_BYTES = 64 * 1024 * 1024
LOG_DEFAULT = 20

rules_redis_option = redis_url_option(
    "Redis holding the rules, e.g. redis://localhost:6379/0 (env RECS_REDIS_URL).",
    required=True,
    envvar="RECS_REDIS_URL",
)
by_option = click.option(
    "--by",
    default=lambda: os.environ.get("USER") or "cli",
    help="Who makes the change, for the audit log [$USER].",
)


@contextmanager
def _store(url: str) -> Iterator[RedisStore]:
    """A store on a checked connection; Redis failures inside become exit 4."""
    client = connect(url)
    store = RedisStore(client)
    try:
        yield store
    except RedisUnavailable as exc:
        raise CliError(f"Redis at {redact(url)} failed: {exc}", EXIT_UNAVAILABLE) from None
    finally:
        client.close()


def _editor(by: str) -> str:
    try:
        return check_editor(by)
    except ValueError as exc:
        raise CliError(f"--by: {exc}") from None


def _rule_id(rule_id: str, where: str = "ID") -> str:
    try:
        return check_rule_id(rule_id)
    except ValueError as exc:
        raise CliError(f"{where} {rule_id[:60]!r}: {exc}") from None


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise CliError(f"{path}: over {MAX_FILE_BYTES} bytes")
    try:
        return jsonsafe.loads(data, max_depth=16)
    except jsonsafe.JSONInputError as exc:
        raise CliError(f"{path}: {exc}") from None


def _now() -> str:
    return utc_stamp(datetime.now(UTC))


def _summary(rule: Mapping[str, Any]) -> str:
    scope = rule.get("scope") or {}
    where = next((f"{k}={v}" for k, v in scope.items()), "site-wide")
    parts = [where]
    for name in ("hide", "hide_tags", "hide_sections", "pin"):
        if rule.get(name):
            parts.append(f"{name} {len(rule[name])}")
    for name in ("max_age_days", "hide_box"):
        if name in rule:
            parts.append(f"{name} {json.dumps(rule[name])}")
    return ", ".join(parts)


@click.group("rules")
def rules_group() -> None:
    """Editorial rules (hide, pin, windows) in Redis; see docs/editorial.md."""


@rules_group.command("list")
@rules_redis_option
@json_option("Print the rules as JSON, each with its state.")
def list_command(redis_url: str, as_json: bool) -> None:
    """Every rule with its state now (active, scheduled, expired)."""
    with _store(redis_url) as store:
        found = store.stored_rules()
    now = datetime.now(UTC)
    rules = [found.rules[rule_id] for rule_id in sorted(found.rules)]
    if as_json:
        listed = [{**rule, "state": rule_state(rule, now)} for rule in rules]
        click.echo(json.dumps({"seq": found.seq, "rules": listed}, ensure_ascii=False))
        return
    for rule in rules:
        click.echo(f"{rule['id']}  {rule_state(rule, now)}  {_summary(rule)}")
    click.echo(f"{len(rules)} rule(s), seq {found.seq}")


@rules_group.command("get")
@click.argument("rule_id", metavar="ID")
@rules_redis_option
def get_command(rule_id: str, redis_url: str) -> None:
    """Print one stored rule as JSON."""
    _rule_id(rule_id)
    with _store(redis_url) as store:
        rule = store.stored_rules().rules.get(rule_id)
    if rule is None:
        raise CliError(f"no rule {rule_id!r}")
    click.echo(json.dumps(rule, ensure_ascii=False, indent=2))


@rules_group.command("put")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--id", "rule_id", help="The rule's id [the file's \"id\" field].")
@by_option
@rules_redis_option
def put_command(file: Path, rule_id: str | None, by: str, redis_url: str) -> None:
    """Create or replace one rule from a JSON file (a rule body, or a rule as `get` prints)."""
    editor = _editor(by)
    body = _read_json(file)
    if not isinstance(body, dict):
        raise CliError(f"{file}: must be a JSON object (one rule)")
    given = body.get("id")
    if rule_id is None:
        if given is None:
            raise CliError(f'{file}: no "id" field: give the rule\'s id with --id ID')
        rule_id = str(given)
    elif given is not None and given != rule_id:
        raise CliError(f"{file}: /id: {given!r} differs from --id {rule_id!r}")
    _rule_id(rule_id, "--id" if given is None else f"{file}: /id")
    try:
        valid = validate_rule(strip_server_fields(body))
    except RuleError as exc:
        raise CliError(f"{file}: {exc}") from None
    rule = stored_rule(rule_id, valid, by=editor, at=_now())
    with _store(redis_url) as store:
        try:
            change = store.put_rule(rule)
        except RuleError as exc:  # the rule set is full
            raise CliError(f"rule {rule_id}: {exc.reason}") from None
    verb = "created" if change.before is None else "replaced"
    click.echo(f"{verb} rule {rule_id} (seq {change.seq})")


@rules_group.command("delete")
@click.argument("rule_id", metavar="ID")
@by_option
@rules_redis_option
def delete_command(rule_id: str, by: str, redis_url: str) -> None:
    """Delete one rule."""
    _rule_id(rule_id)
    editor = _editor(by)
    with _store(redis_url) as store:
        change = store.delete_rule(rule_id, by=editor, at=_now())
    if change is None:
        raise CliError(f"no rule {rule_id!r}")
    click.echo(f"deleted rule {rule_id} (seq {change.seq})")


@rules_group.command("export")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to FILE [stdout].")
@rules_redis_option
def export_command(output: Path | None, redis_url: str) -> None:
    """Print every rule as the JSON file `import` (and RECS_RULES_FILE) takes."""
    with _store(redis_url) as store:
        found = store.stored_rules()
    document = {"seq": found.seq, "rules": {k: found.rules[k] for k in sorted(found.rules)}}
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    partial = output.with_name(output.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(output)  # never a half-written rules file in git
    except OSError as exc:
        raise CliError(f"{output}: cannot write ({exc.strerror or exc})") from None
    click.echo(f"exported {len(found.rules)} rule(s) (seq {found.seq}) to {output}", err=True)


@rules_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@by_option
@rules_redis_option
def import_command(file: Path, by: str, redis_url: str) -> None:
    """Replace the whole rule set with FILE's, atomically (rules absent from FILE are deleted)."""
    editor = _editor(by)
    try:
        bodies = validate_document(_read_json(file))
    except RuleError as exc:
        raise CliError(f"{file}: {exc}") from None
    with _store(redis_url) as store:
        done = store.replace_rules(bodies, by=editor, at=_now())
    click.echo(
        f"imported {len(bodies)} rule(s): {len(done.added)} added, {len(done.changed)} changed,"
        f" {len(done.removed)} removed, {len(done.unchanged)} unchanged (seq {done.seq})"
    )


def _changed_fields(entry: Mapping[str, Any]) -> str:
    before = strip_server_fields(entry.get("before") or {})
    after = strip_server_fields(entry.get("after") or {})
    names = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
    return ", ".join(names) or "-"


@rules_group.command("log")
@click.argument("rule_id", metavar="[ID]", required=False)
@click.option("--limit", type=click.IntRange(1, 10_000), default=LOG_DEFAULT, show_default=True)
@json_option("One JSON line per change, with the rule before and after.")
@rules_redis_option
def log_command(rule_id: str | None, limit: int, as_json: bool, redis_url: str) -> None:
    """The audit log, newest first: who changed which rule when (of one rule with ID)."""
    if rule_id is not None:
        _rule_id(rule_id)
    with _store(redis_url) as store:
        entries = store.rule_history(rule_id, limit)
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            continue
        click.echo(
            f"{entry['at']}  seq {entry['seq']}  {entry['op']:<6}  {entry['id']}"
            f"  by {entry['by']}  fields: {_changed_fields(entry)}"
        )
