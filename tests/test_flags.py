"""Article flags (no_recommend, sponsored, embargo_until, expires_at): records, the metadata
encoding, and the way through train -> model directory -> publish -> read, and an upsert."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import Article, RecordError, article_from_mapping, read_articles
from service.redis import keys
from service.redis import queue as upd
from service.redis.codec import decode_meta
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.redis.writer import Writer
from service.store.local import LocalStore
from tests.paths import SAMPLE_ARTICLES

EMBARGO = "2026-12-05T06:00:00+01:00"
EMBARGO_EPOCH = datetime(2026, 12, 5, 5, 0, tzinfo=UTC).timestamp()
EXPIRES = "2027-01-01T00:00:00Z"
EXPIRES_EPOCH = datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def record(**fields: object) -> dict[str, object]:
    return {"id": "a-1", "title": "Title", **fields}


# ------------------------------------------------------------------------------- records
def test_flags_are_read_and_times_normalised_to_utc() -> None:
    article = article_from_mapping(
        record(no_recommend=True, sponsored=False, embargo_until=EMBARGO, expires_at=EXPIRES)
    )
    assert article.no_recommend is True and article.sponsored is False
    assert article.embargo_until == "2026-12-05T05:00:00Z"
    assert article.expires_at == "2027-01-01T00:00:00Z"
    assert article.extra == {}  # flags are fields, not unknown extras
    # Only set flags are written back: unflagged records stay as they were.
    assert article_from_mapping(article.to_dict()) == article
    plain = article_from_mapping(record())
    assert not set(plain.to_dict()) & {"no_recommend", "sponsored", "embargo_until", "expires_at"}


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"no_recommend": "yes"}, "no_recommend", "must be true or false, got str"),
        ({"sponsored": 1}, "sponsored", "must be true or false, got int"),
        ({"embargo_until": "2026-12-05T06:00:00"}, "embargo_until", "has no UTC offset"),
        ({"expires_at": "next week"}, "expires_at", "is not an ISO-8601 date/time"),
        ({"expires_at": 1700000000}, "expires_at", "must be an ISO-8601 string"),
    ],
)
def test_bad_flags_name_file_line_and_field(fields: dict, field: str, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        article_from_mapping(record(**fields), source="cms.jsonl", line=7)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"cms.jsonl:7: field '{field}':")
    assert reason in str(caught.value)


def test_csv_cells_carry_flags(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "id,title,sponsored,no_recommend,expires_at\n"
        "a-1,One,true,0,2027-01-01T00:00:00Z\n"
        "a-2,Two,,,\n"
    )
    one, two = read_articles([path]).articles
    assert one.sponsored and not one.no_recommend and one.expires_at == "2027-01-01T00:00:00Z"
    assert not two.sponsored and two.expires_at is None


# ------------------------------------------------------------------------------- encoding
def test_unflagged_metadata_keeps_the_old_bytes_and_old_blobs_decode() -> None:
    base = ("a-1", "T", "", "", None, "", ["x"], ["x"])
    old = json.dumps(list(base), separators=(",", ":")).encode()
    assert keys.encode_meta(*base, keys.encode_flags(False, False, None, None)) == old
    meta = decode_meta(old)
    assert (meta.no_recommend, meta.sponsored, meta.embargo_until, meta.expires_at) == (
        False,
        False,
        None,
        None,
    )


def test_flags_are_appended_only_as_far_as_one_is_set() -> None:
    base = ("a-1", "T", "", "", None, "", [], [])
    assert keys.encode_flags(False, True, None, None) == [0, 1]
    blob = keys.encode_meta(*base, keys.encode_flags(False, True, None, None))
    assert blob.endswith(b"[],[],0,1]")
    full = keys.encode_meta(*base, keys.encode_flags(True, True, EMBARGO_EPOCH, EXPIRES_EPOCH))
    meta = decode_meta(full)
    assert meta.no_recommend and meta.sponsored
    assert meta.embargo_until == EMBARGO_EPOCH and meta.expires_at == EXPIRES_EPOCH
    assert keys.decode_meta(full)["expires_at"] == int(EXPIRES_EPOCH)


# ------------------------------------------------------------------------------- pipeline
def flagged_corpus() -> list[Article]:
    articles = read_articles([SAMPLE_ARTICLES]).articles[:60]
    articles[3] = dataclasses.replace(articles[3], sponsored=True)
    articles[4] = dataclasses.replace(articles[4], no_recommend=True, expires_at=EXPIRES)
    articles[5] = dataclasses.replace(articles[5], embargo_until="2026-12-05T05:00:00Z")
    return articles


def test_flags_survive_train_publish_and_read(tmp_path: Path, redis_url: str) -> None:
    articles = flagged_corpus()
    model = RelatedModel(config=ModelConfig(k=5, rerank=False)).fit(articles)
    save_model(model, articles, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.articles[3].sponsored and loaded.articles[4].no_recommend
    ids = [a.id for a in articles[2:6]]

    def check(metas: list) -> None:
        plain, sponsored, hidden, embargoed = metas
        assert not plain.sponsored and not plain.no_recommend and plain.embargo_until is None
        assert sponsored.sponsored and not sponsored.no_recommend
        assert hidden.no_recommend and hidden.expires_at == EXPIRES_EPOCH
        assert embargoed.embargo_until == EMBARGO_EPOCH

    check(LocalStore(loaded).articles(loaded.version, ids))
    client = redis.Redis.from_url(redis_url)
    publish(client, loaded)
    store = RedisStore(client)
    check(store.articles(loaded.version, ids))
    # The one-round-trip read of /related decodes the same flags.
    read = store.related_articles(loaded.version, articles[4].id)
    assert read is not None and read.source is not None and read.source.no_recommend


def test_an_upsert_sets_and_clears_flags(tmp_path: Path, redis_url: str) -> None:
    articles = flagged_corpus()
    model = RelatedModel(config=ModelConfig(k=5, rerank=False)).fit(articles)
    save_model(model, articles, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    client = redis.Redis.from_url(redis_url)
    publish(client, loaded)
    flagged = dataclasses.replace(articles[10], sponsored=True, expires_at="2027-01-01T00:00:00Z")
    cleared = dataclasses.replace(articles[3], sponsored=False)

    def load(version: str) -> LoadedModel:  # the writer's model loader
        return loaded

    with Writer(client, load) as writer:
        entries = [upd.enqueue_upsert(client, a, by="cli") for a in (flagged, cleared)]
        writer.run(once=True)
    for entry in entries:
        ack = upd.wait_applied(client, entry, 1.0)
        assert ack is not None and ack["status"] == "applied"
    store = RedisStore(client, meta_cache_size=0)
    now_flagged, now_cleared = store.articles(loaded.version, [flagged.id, cleared.id])
    assert now_flagged is not None and now_flagged.sponsored
    assert now_flagged.expires_at == EXPIRES_EPOCH
    assert now_cleared is not None and not now_cleared.sponsored
