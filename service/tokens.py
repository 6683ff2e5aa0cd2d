"""Reader tokens: the site's backend signs a reader id; the API only checks the signature.

A token is ``<user_id>.<expires_unix>.<sig>``, where ``sig`` is the unpadded base64url
HMAC-SHA256 of ``<user_id>.<expires_unix>`` under the shared key ``RECS_USER_SIGNING_KEY``.
A user id may itself contain dots: the last two fields are split off from the right (the
expiry is digits, the signature base64url, neither has a dot). Test vector and signers for
PHP and Node: docs/security.md.

Without a valid token nobody can read or write a reader's server-side history: naming an id
is not enough, and a token cannot be altered or extended without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from models.records import ID_PATTERN

# Long enough that the key cannot be guessed offline from one token (openssl rand -hex 32).
MIN_KEY_LENGTH = 32
# Expiry in unix seconds: up to 12 digits (year 33658), so the number parses cheaply.
_EXPIRES = re.compile(r"[0-9]{1,12}")
# 32 bytes of HMAC-SHA256 are 43 base64url characters without padding.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_TOKEN_LENGTH = 128 + 1 + 12 + 1 + 43


class TokenError(ValueError):
    """A token that is not well formed (``malformed``) or not valid (forged or expired)."""

    def __init__(self, message: str, *, malformed: bool) -> None:
        super().__init__(message)
        self.malformed = malformed


@dataclass(frozen=True, slots=True)
class Reader:
    """A reader the site vouched for."""

    user_id: str
    expires: int


def _signature(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(key: str, user_id: str, expires: int) -> str:
    """The token of ``user_id`` valid until ``expires`` (unix seconds)."""
    if not ID_PATTERN.fullmatch(user_id):
        raise ValueError(f"user id {user_id[:40]!r}: 1-128 of A-Z a-z 0-9 . _ : -")
    if not 0 <= expires < 10**12:
        raise ValueError("expires: unix seconds, 0 to 999999999999")
    payload = f"{user_id}.{expires}"
    return f"{payload}.{_signature(key.encode('utf-8'), payload)}"


def verify(key: str, token: object, now: float) -> Reader:
    """The reader a token names, or :class:`TokenError` saying why it is refused."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenError("not a token: <user_id>.<expires_unix>.<signature>", malformed=True)
    parts = token.rsplit(".", 2)
    if len(parts) != 3:
        raise TokenError("not a token: <user_id>.<expires_unix>.<signature>", malformed=True)
    user_id, expires, signature = parts
    if not (
        ID_PATTERN.fullmatch(user_id)
        and _EXPIRES.fullmatch(expires)
        and _SIGNATURE.fullmatch(signature)
    ):
        raise TokenError("not a token: <user_id>.<expires_unix>.<signature>", malformed=True)
    expected = _signature(key.encode("utf-8"), f"{user_id}.{expires}")
    # Constant time: the comparison must not tell a forger how many characters were right.
    if not hmac.compare_digest(expected, signature):
        raise TokenError("token signature does not match", malformed=False)
    if int(expires) <= now:
        raise TokenError("token expired", malformed=False)
    return Reader(user_id, int(expires))
