"""Reader tokens: the documented test vector, and what the check refuses."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from service.auth import secret_setting
from service.tokens import MIN_KEY_LENGTH, TokenError, sign, verify
from tests.paths import REPO

# The vector in docs/security.md, computed with openssl:
#   printf '%s' 'reader-42.1893456000' | openssl dgst -sha256 -hmac "$KEY" -binary
#     | openssl base64 -A | tr '+/' '-_' | tr -d '='
KEY = "docs-test-vector-key-0123456789abcdef"
VECTOR = "reader-42.1893456000.s-oz6EHhxFTgfG5XS0QXMm-Dt4fT6RGcc_laN2fkOz8"

NODE_SIGNER = """
const crypto = require("crypto");
function sign(key, userId, ttlSeconds, now) {
  const payload = `${userId}.${Math.floor(now) + ttlSeconds}`;
  const sig = crypto.createHmac("sha256", key).update(payload).digest("base64url");
  return `${payload}.${sig}`;
}
process.stdout.write(sign(process.argv[1], "reader-42", 0, 1893456000));
"""


def test_the_documented_vector() -> None:
    assert sign(KEY, "reader-42", 1893456000) == VECTOR
    reader = verify(KEY, VECTOR, now=1893455999)
    assert (reader.user_id, reader.expires) == ("reader-42", 1893456000)


@pytest.mark.skipif(shutil.which("node") is None, reason="the Node signer needs node")
def test_the_documented_node_signer_agrees() -> None:
    out = subprocess.run(
        ["node", "-e", NODE_SIGNER, KEY], capture_output=True, text=True, check=True
    ).stdout
    assert out == VECTOR


def doc_signer(language: str) -> str:
    """The signer for ``language`` as docs/security.md shows it (its fenced code block)."""
    text = (REPO / "docs" / "security.md").read_text()
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert match, f"no {language} signer in docs/security.md"
    return match.group(1)


def check_signed(token: str) -> None:
    reader = verify(KEY, token, now=time.time())
    assert reader.user_id == "reader-42"
    assert 3590 <= reader.expires - time.time() <= 3600


def test_the_documented_python_signer_makes_valid_tokens() -> None:
    scope: dict[str, object] = {}
    exec(doc_signer("python"), scope)  # noqa: S102 - our own documentation's code
    check_signed(scope["sign"](KEY, "reader-42", 3600))  # type: ignore[operator]


@pytest.mark.skipif(shutil.which("node") is None, reason="the Node signer needs node")
def test_the_documented_node_signer_makes_valid_tokens() -> None:
    script = doc_signer("js") + 'process.stdout.write(sign(process.argv[1], "reader-42", 3600));'
    out = subprocess.run(["node", "-e", script, KEY], capture_output=True, text=True, check=True)
    check_signed(out.stdout)


@pytest.mark.skipif(shutil.which("php") is None, reason="the PHP signer needs php")
def test_the_documented_php_signer_makes_valid_tokens() -> None:
    script = doc_signer("php") + 'echo recs_sign($argv[1], "reader-42", 3600);'
    out = subprocess.run(["php", "-r", script, KEY], capture_output=True, text=True, check=True)
    check_signed(out.stdout)


def test_user_ids_may_contain_dots() -> None:
    token = sign(KEY, "site.reader.7", 2_000_000_000)
    assert verify(KEY, token, now=0).user_id == "site.reader.7"


@pytest.mark.parametrize(
    ("token", "malformed", "reason"),
    [
        (VECTOR, False, "expired"),  # checked at its expiry second
        (sign("another-key-0123456789abcdefghijkl", "reader-42", 1893456000), False, "signature"),
        (VECTOR.replace("reader-42", "reader-43"), False, "signature"),
        (VECTOR.replace("1893456000", "1893456001"), False, "signature"),
        (VECTOR + "=", True, "not a token"),
        (VECTOR.replace(".", "", 1), True, "not a token"),
        ("reader-42..sig", True, "not a token"),
        ("", True, "not a token"),
        (None, True, "not a token"),
        ("x" * 10_000, True, "not a token"),
        ("réader.1893456000." + "A" * 43, True, "not a token"),
    ],
)
def test_refused_tokens(token: object, malformed: bool, reason: str) -> None:
    with pytest.raises(TokenError, match=reason) as caught:
        verify(KEY, token, now=1893456000)
    assert caught.value.malformed is malformed


def test_sign_user_prints_a_token_the_api_accepts() -> None:
    result = CliRunner().invoke(
        cli, ["sign-user", "reader-42", "--ttl", "2h"], env={"RECS_USER_SIGNING_KEY": KEY}
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    reader = verify(KEY, token, now=0)
    assert reader.user_id == "reader-42"
    # Valid for two hours from now, give or take the test's own run time.
    assert 7190 <= reader.expires - time.time() <= 7200


def test_sign_user_reads_the_key_as_the_api_does() -> None:
    # A key exported from a file keeps its newline: both sides must use the same bytes.
    raw = f"  {KEY}\n"
    result = CliRunner().invoke(cli, ["sign-user", "reader-42"], env={"RECS_USER_SIGNING_KEY": raw})
    assert result.exit_code == 0, result.output
    api_key = secret_setting({"USER_SIGNING_KEY": raw}, "USER_SIGNING_KEY", MIN_KEY_LENGTH)
    assert api_key is not None
    assert verify(api_key, result.output.strip(), now=0).user_id == "reader-42"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sign-user", "reader 42"], "USER_ID"),
        (["sign-user", "reader-42", "--ttl", "forever"], "--ttl"),
        (["sign-user", "reader-42", "--ttl", "0"], "--ttl"),
        (["sign-user", "reader-42", "--key", "short"], "--key"),
    ],
)
def test_sign_user_bad_input_is_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args, env={"RECS_USER_SIGNING_KEY": KEY})
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
