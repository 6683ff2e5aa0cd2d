"""``recs sign-user``: a reader token for testing (the site's backend signs them in production)."""

from __future__ import annotations

import re
import time

import click

from scripts.common import CliError
from service.tokens import MIN_KEY_LENGTH, sign

_TTL = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_ttl(value: str) -> int:
    """``30d``, ``12h``, ``90m``, ``45s`` or plain seconds as seconds (at least 1)."""
    match = _TTL.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise CliError(f"--ttl: {value!r} is not a duration such as 30d, 12h, 90m or 3600")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@click.command("sign-user")
@click.argument("user_id")
@click.option("--ttl", default="30d", show_default=True, help="How long the token is valid.")
@click.option(
    "--key",
    envvar="RECS_USER_SIGNING_KEY",
    required=True,
    help="The signing key (env RECS_USER_SIGNING_KEY, as the API has it).",
)
def sign_user(user_id: str, ttl: str, key: str) -> None:
    """Print a signed reader token for USER_ID (``<user_id>.<expires>.<signature>``)."""
    # Stripped as the API strips RECS_USER_SIGNING_KEY (service/auth.secret_setting): a key
    # read from a file with its newline must sign what the API checks.
    key = key.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise CliError(f"--key: the signing key must be at least {MIN_KEY_LENGTH} characters")
    expires = int(time.time()) + parse_ttl(ttl)
    try:
        click.echo(sign(key, user_id, expires))
    except ValueError as exc:
        raise CliError(f"USER_ID: {exc}") from None
