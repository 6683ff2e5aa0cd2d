"""The Redis layout is a contract between publisher and API: every template is pinned here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.redis import keys

V = "20260101T000000Z-abcdef1234"


def test_global_keys_are_pinned() -> None:
    assert keys.CURRENT == "rs:current"
    assert keys.VERSIONS == "rs:versions"
    assert keys.PUBLISHING == "rs:publishing"
    assert keys.PUBLISH_LOCK == "rs:lock:publish"
    assert keys.VERSION_ROOT == "rs:v:"
    assert keys.INFO_SUFFIX == ":info"
    assert keys.LAYOUT == 2
    assert keys.RATE_LIMIT_PREFIX == "rs:rl"
    assert keys.RULES == "rs:rules"
    assert keys.RULES_SEQ == "rs:rules:seq"
    assert keys.RULES_LOG == "rs:rules:log"


def test_version_keys_are_pinned() -> None:
    assert keys.version_prefix(V) == "rs:v:20260101T000000Z-abcdef1234:"
    assert keys.version_pattern(V) == "rs:v:20260101T000000Z-abcdef1234:*"
    assert keys.info_key(V) == "rs:v:20260101T000000Z-abcdef1234:info"
    assert keys.index_key(V) == "rs:v:20260101T000000Z-abcdef1234:idx"
    assert keys.neighbours_prefix(V) == "rs:v:20260101T000000Z-abcdef1234:n:"
    assert keys.meta_prefix(V) == "rs:v:20260101T000000Z-abcdef1234:m:"
    assert keys.neighbours_key(V, 7) == "rs:v:20260101T000000Z-abcdef1234:n:7"
    assert keys.meta_key(V, 0) == "rs:v:20260101T000000Z-abcdef1234:m:0"
    # The Lua script of the store builds the info key from these two pieces.
    assert keys.VERSION_ROOT + V + keys.INFO_SUFFIX == keys.info_key(V)


def test_every_version_key_matches_its_scan_pattern() -> None:
    prefix = keys.version_pattern(V).removesuffix("*")
    for key in (
        keys.info_key(V),
        keys.index_key(V),
        keys.neighbours_key(V, 3),
        keys.meta_key(V, 3),
    ):
        assert key.startswith(prefix)
    # ... and no global key does.
    for key in (
        keys.CURRENT,
        keys.VERSIONS,
        keys.PUBLISHING,
        keys.PUBLISH_LOCK,
        keys.RULES,
        keys.RULES_SEQ,
        keys.RULES_LOG,
    ):
        assert not key.startswith(keys.VERSION_ROOT)


@pytest.mark.parametrize("bad", ["", "a:b", "a*", "a?b", "a[b]", "a b", "x" * 101, "é"])
def test_unsafe_version_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid version id"):
        keys.info_key(bad)


def test_neighbours_round_trip_within_quantisation_error() -> None:
    rows = np.array([5, 0, 1_000_000, 42], dtype=np.int32)
    scores = np.array([0.987654, 0.5, 1e-6, 0.0], dtype=np.float32)
    blob = keys.encode_neighbours(rows, scores)
    assert len(blob) == 4 * keys.BYTES_PER_NEIGHBOUR == 24
    got_rows, got_scores = keys.decode_neighbours(blob)
    assert got_rows.tolist() == rows.tolist()
    assert np.all(np.abs(got_scores - scores) <= 0.5 / keys.SCORE_SCALE + 1e-7)


def test_neighbour_blob_is_rows_then_scores_little_endian() -> None:
    blob = keys.encode_neighbours(np.array([1, 258]), np.array([1.0, 0.0]))
    assert blob == b"\x01\x00\x00\x00\x02\x01\x00\x00\xff\xff\x00\x00"


def test_scores_are_clipped_not_wrapped() -> None:
    q = keys.quantize_scores(np.array([1.0000001, -0.1, np.nan, 0.5], dtype=np.float32))
    assert q.tolist() == [65535, 0, 0, 32768]


def test_empty_neighbour_list() -> None:
    assert keys.encode_neighbours(np.array([], dtype=np.int32), np.array([])) == b""
    rows, scores = keys.decode_neighbours(b"")
    assert rows.size == 0 and scores.size == 0


def test_meta_round_trip_is_compact_json_with_id_first() -> None:
    blob = keys.encode_meta(
        "reuters-1",
        'Bahia — cocoa "review"',
        "https://example.com/a",
        "markets",
        None,
        "",
        ["Cocoa", "el-salvador"],
        ["el-salvador", "cocoa"],
    )
    # The store's Lua script reads the id with a pattern anchored at the start.
    assert blob.startswith(b'["reuters-1",')
    assert b", " not in blob and b": " not in blob
    assert json.loads(blob)[1] == 'Bahia — cocoa "review"'
    assert keys.decode_meta(blob) == {
        "id": "reuters-1",
        "title": 'Bahia — cocoa "review"',
        "url": "https://example.com/a",
        "section": "markets",
        "published_at": None,
        "image_url": "",
        "tags": ["Cocoa", "el-salvador"],
        "tag_keys": ["el-salvador", "cocoa"],
    }


def test_recommendation_keys_are_pinned() -> None:
    assert keys.latest_key(V) == "rs:v:20260101T000000Z-abcdef1234:latest"
    assert keys.latest_section_key(V, "World News") == (
        "rs:v:20260101T000000Z-abcdef1234:latest:s:world news"
    )
    assert keys.USER_ROOT == "rs:u:"
    assert keys.user_history_key("reader-42") == "rs:u:reader-42:h"
    assert keys.TRENDING_ROOT == "rs:trend:"
    assert keys.trending_key(493_000) == "rs:trend:493000"
    # The per-version sets go with their version; reader data never does.
    prefix = keys.version_pattern(V).removesuffix("*")
    assert keys.latest_key(V).startswith(prefix)
    assert keys.latest_section_key(V, "x").startswith(prefix)
    for key in (keys.user_history_key("u"), keys.trending_key(1)):
        assert not key.startswith(keys.VERSION_ROOT)


def test_update_keys_are_pinned() -> None:
    assert keys.UPDATES == "rs:updates"
    assert keys.UPDATE_LOCK == "rs:lock:updates"
    assert keys.ACK_ROOT == "rs:ack:"
    assert keys.ack_key("1767225600000-3") == "rs:ack:1767225600000-3"
    # Global: a version's SCAN-and-delete never touches the queue.
    for key in (keys.UPDATES, keys.UPDATE_LOCK, keys.ack_key("1-0")):
        assert not key.startswith(keys.VERSION_ROOT)


@pytest.mark.parametrize("bad", ["", "1", "1-", "a-1", "1-0*", "1-0 x"])
def test_ack_keys_take_only_stream_entry_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid stream entry id"):
        keys.ack_key(bad)
