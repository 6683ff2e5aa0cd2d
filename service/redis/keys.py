"""The Redis layout: every key template and value encoding the publisher and the API share.

Global keys::

    rs:current              string   the live version id (flipped atomically by a publish)
    rs:versions             zset     complete versions, score = first publish time (unix s)
    rs:publishing           zset     versions whose keys may be incomplete (being written or
                                     deleted), score = start time; leftovers are swept
    rs:lock:publish         string   token of the one publish/rollback running (expires)
    rs:u:USER:h             list     a reader's history, article ids most recent first (capped,
                                     expires; "Recommended for you", service/redis/events.py)
    rs:trend:HOUR           zset     article id -> readers in that UTC hour (HOUR = unix time //
                                     3600; at most TRENDING_BUCKET_SIZE members, space-saving;
                                     expires after the trending window)
    rs:seen:KIND:DIGEST     zset     article id -> when this reader (KIND u: signed user id,
                                     a: client address; DIGEST: SHA-256 of it) was first counted
                                     for trending in the window (capped; expires)
    rs:updates              stream   queued upserts and deletes (op, id, article, at, by); the one
                                     writer (``recs worker``) applies them (service/redis/queue.py)
    rs:lock:updates         string   token of the one update writer (expires unless refreshed)
    rs:ack:ENTRY            list     the writer's JSON result for stream entry ENTRY (expires)
    rs:rules                hash     editorial rule id -> the stored rule as JSON (outside every
                                     version: survives publish, rollback and prune)
    rs:rules:seq            string   the rules counter, bumped by every change (ETags, caches)
    rs:rules:log            stream   the rules' audit log (seq, op, id, by, at, before, after;
                                     capped near RULES_LOG_MAXLEN, service/redis/rules.py)
    rs:rl...                         Flask-Limiter's rate-limit counters, in its own layout
                                     under :data:`RATE_LIMIT_PREFIX` (service/ratelimit.py)

Per version ``V`` (all under the prefix ``rs:v:V:``, so a version is deleted by SCAN MATCH)::

    rs:v:V:info             hash     version, built_at, published_at, articles, k, coverage,
                                     score quantiles, next_row, previous, layout, as_of; and
                                     from incremental updates: seq, applied, upserts, deletes,
                                     base_articles, updated_at
    rs:v:V:idx              hash     article id -> row number (decimal)
    rs:v:V:n:ROW            string   neighbours: int32 LE rows, then uint16 LE scores
    rs:v:V:m:ROW            string   metadata: compact JSON array, the article id first
    rs:v:V:latest           zset     article id -> published time (unix s; 0 when undated)
    rs:v:V:latest:s:SECTION zset     the same for one section (case-folded)

Rows are numbered from 0 in model order; ``next_row`` in the info hash is the first free row,
so an incremental upsert of a new article appends a row and never renumbers existing ones (an
edit keeps its row, so lists that hold it stay valid).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

PREFIX = "rs"
CURRENT = f"{PREFIX}:current"
VERSIONS = f"{PREFIX}:versions"
PUBLISHING = f"{PREFIX}:publishing"
PUBLISH_LOCK = f"{PREFIX}:lock:publish"
# Every per-version key is VERSION_ROOT + version + ":" + name.
VERSION_ROOT = f"{PREFIX}:v:"
INFO_SUFFIX = ":info"

# Bumped when an encoding below changes; stored in each version's info hash.
# 2: the article flags may follow tag_keys in the metadata array (layout-1 blobs still decode).
LAYOUT = 2
# Scores are cosine blends in [0, 1]; uint16 keeps them to within 0.5 / 65535.
SCORE_SCALE = 65535
ROW_DTYPE = np.dtype("<i4")
SCORE_DTYPE = np.dtype("<u2")
BYTES_PER_NEIGHBOUR = ROW_DTYPE.itemsize + SCORE_DTYPE.itemsize

# Version ids go into keys and SCAN patterns: no glob characters, no colon.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")


def utc_now() -> str:
    """Now in UTC as info hashes and queue entries store it (``YYYY-MM-DDTHH:MM:SSZ``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_version(version: str) -> str:
    """Return ``version`` if it is safe inside a key and a SCAN pattern, else raise ValueError."""
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"invalid version id {version!r}")
    return version


def version_prefix(version: str) -> str:
    """Prefix of every key of one version."""
    return f"{VERSION_ROOT}{check_version(version)}:"


def version_pattern(version: str) -> str:
    """SCAN MATCH pattern of every key of one version."""
    return version_prefix(version) + "*"


def info_key(version: str) -> str:
    """Hash describing one version."""
    return f"{VERSION_ROOT}{check_version(version)}{INFO_SUFFIX}"


def index_key(version: str) -> str:
    """Hash of article id -> row number in one version."""
    return version_prefix(version) + "idx"


def neighbours_prefix(version: str) -> str:
    """Prefix of the neighbour keys of one version (the row number follows)."""
    return version_prefix(version) + "n:"


def meta_prefix(version: str) -> str:
    """Prefix of the metadata keys of one version (the row number follows)."""
    return version_prefix(version) + "m:"


def neighbours_key(version: str, row: int) -> str:
    """Packed neighbour list of one row."""
    return f"{neighbours_prefix(version)}{row}"


def meta_key(version: str, row: int) -> str:
    """Metadata blob of one row."""
    return f"{meta_prefix(version)}{row}"


def latest_key(version: str) -> str:
    """Sorted set of every article of one version by published time."""
    return version_prefix(version) + "latest"


def latest_section_key(version: str, section: str) -> str:
    """Sorted set of one section's articles by published time (section case-folded)."""
    return f"{version_prefix(version)}latest:s:{section.casefold()}"


# Incremental updates: one global stream, one writer lock, one short-lived ack list per entry.
UPDATES = f"{PREFIX}:updates"
UPDATE_LOCK = f"{PREFIX}:lock:updates"
ACK_ROOT = f"{PREFIX}:ack:"
# Stream entry ids are "<ms>-<seq>": digits and one dash, safe in a key.
ENTRY_ID_PATTERN = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def ack_key(entry_id: str) -> str:
    """List the writer pushes its JSON result for one ``rs:updates`` entry to."""
    if not ENTRY_ID_PATTERN.fullmatch(entry_id):
        raise ValueError(f"invalid stream entry id {entry_id[:40]!r}")
    return f"{ACK_ROOT}{entry_id}"


# Editorial rules: global, never under VERSION_ROOT, so no publish, rollback or prune
# touches them.
RULES = f"{PREFIX}:rules"
RULES_SEQ = f"{PREFIX}:rules:seq"
RULES_LOG = f"{PREFIX}:rules:log"

# Flask-Limiter's key prefix: it builds its counter keys itself.
RATE_LIMIT_PREFIX = f"{PREFIX}:rl"

USER_ROOT = f"{PREFIX}:u:"
TRENDING_ROOT = f"{PREFIX}:trend:"
SEEN_ROOT = f"{PREFIX}:seen:"
READER_KINDS = ("u", "a")  # a signed user id, an anonymous client address


# Reader ids come straight from requests: checked here too, so no caller can put a glob,
# whitespace or an unbounded string into a key name even if it forgot to validate.
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_user_id(user_id: str) -> str:
    """Return ``user_id`` if it is a valid reader id (as the API accepts), else ValueError."""
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise ValueError(f"invalid user id {user_id[:40]!r}")
    return user_id


def user_history_key(user_id: str) -> str:
    """List of a reader's article ids, most recent first (ids as validated by the API)."""
    return f"{USER_ROOT}{check_user_id(user_id)}:h"


def trending_key(hour: int) -> str:
    """Sorted set of article event counts in one UTC hour (``unix_seconds // 3600``)."""
    return f"{TRENDING_ROOT}{int(hour)}"


def seen_key(kind: str, identity: str) -> str:
    """Sorted set of the articles one reader was counted for in the trending window.

    The identity is hashed: client addresses and user ids never appear in key names (SCAN,
    MONITOR, slow logs), and the key length is fixed whatever the identity.
    """
    if kind not in READER_KINDS:
        raise ValueError(f"reader kind must be one of {READER_KINDS}, got {kind!r}")
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"{SEEN_ROOT}{kind}:{digest}"


def quantize_scores(scores: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] as uint16 (clipped, so float noise above 1 cannot wrap)."""
    clipped = np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)
    return np.rint(clipped * SCORE_SCALE).astype(SCORE_DTYPE)


def encode_neighbours(rows: np.ndarray, scores: np.ndarray) -> bytes:
    """Pack one neighbour list: all int32 rows, then all uint16 quantised scores."""
    return pack_neighbours(rows, quantize_scores(np.asarray(scores)))


def pack_neighbours(rows: np.ndarray, quantised: np.ndarray) -> bytes:
    """Pack one neighbour list whose scores are quantised already (a publish quantises a
    whole model's scores in one call instead of one per row)."""
    return (
        np.asarray(rows, dtype=ROW_DTYPE).tobytes()
        + np.asarray(quantised, dtype=SCORE_DTYPE).tobytes()
    )


def decode_neighbours(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Unpack a neighbour list into (int32 rows, float32 scores)."""
    count = len(blob) // BYTES_PER_NEIGHBOUR
    split = count * ROW_DTYPE.itemsize
    rows = np.frombuffer(blob, dtype=ROW_DTYPE, count=count)
    scores = np.frombuffer(blob, dtype=SCORE_DTYPE, count=count, offset=split)
    return rows, scores.astype(np.float32) / SCORE_SCALE


# Positions in the metadata array. The id comes first so a Lua script can read it with a
# pattern match instead of decoding JSON (ids are [A-Za-z0-9._:-], never escaped).
META_FIELDS = ("id", "title", "url", "section", "published_at", "image_url", "tags", "tag_keys")
# The article flags follow tag_keys, only as far as one is set (most articles have none, so
# their blobs are byte for byte the layout-1 ones): no_recommend and sponsored as 0/1,
# embargo_until and expires_at as whole epoch seconds (0: unset). A decoder that reads a blob
# written before flags existed pads them with "unset".
FLAG_FIELDS = ("no_recommend", "sponsored", "embargo_until", "expires_at")


def encode_flags(
    no_recommend: bool, sponsored: bool, embargo_until: float | None, expires_at: float | None
) -> list[int]:
    """The metadata array's trailing flag values (empty when no flag is set)."""
    values = [
        int(no_recommend),
        int(sponsored),
        0 if embargo_until is None else int(embargo_until),
        0 if expires_at is None else int(expires_at),
    ]
    while values and not values[-1]:
        values.pop()
    return values


def encode_meta(
    article_id: str,
    title: str,
    url: str,
    section: str,
    published_at: str | None,
    image_url: str,
    tags: Sequence[str],
    tag_keys: Sequence[str],
    flags: Sequence[int] = (),
) -> bytes:
    """One article's metadata as a compact JSON array (UTF-8, no spaces); ``flags`` from
    :func:`encode_flags`."""
    record: list[Any] = [article_id, title, url, section, published_at, image_url]
    record.extend((list(tags), list(tag_keys), *flags))
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def decode_meta(blob: bytes) -> dict[str, Any]:
    """Metadata blob back to a dict keyed by :data:`META_FIELDS`, plus the :data:`FLAG_FIELDS`
    the blob holds (as stored: 0/1 and epoch seconds)."""
    values = json.loads(blob)
    out = dict(zip(META_FIELDS, values[: len(META_FIELDS)], strict=True))
    out.update(zip(FLAG_FIELDS, values[len(META_FIELDS) :], strict=False))
    return out
