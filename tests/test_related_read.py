"""``Store.related_articles``: the one read behind /related, the same from Redis and locally."""

from __future__ import annotations

import json

import pytest
import redis
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from service import create_app
from service.redis import keys
from service.redis.codec import decode_meta
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.related import RULES_MARGIN
from service.store.base import ArticleMeta, LazyMetas, Neighbour, RelatedRead, Store
from service.store.cache import VersionCache
from service.store.local import LocalStore
from tests.test_redis_store import V, write_version

URL = "/v1/articles/{}/related"


def plain(read: RelatedRead | None) -> tuple[object, ...] | None:
    """A read with its lazy metas forced, for comparison."""
    if read is None:
        return None
    return (read.source, [n.id for n in read.neighbours], list(read.metas), read.complete)


@pytest.mark.parametrize("limit", [None, 0, 1, 7, 30, 500])
def test_redis_and_local_reads_are_identical(
    redis_client: redis.Redis, loaded: LoadedModel, limit: int | None
) -> None:
    publish(redis_client, loaded)
    remote, local = RedisStore(redis_client), LocalStore(loaded)
    version = loaded.version
    for article in loaded.articles[:80]:
        here = local.related_articles(version, article.id, limit)
        there = remote.related_articles(version, article.id, limit)
        assert here is not None and there is not None
        assert plain(there) == plain(here), article.id
        # Redis keeps scores as uint16: equal to the model's within the quantisation step.
        for a, b in zip(here.neighbours, there.neighbours, strict=True):
            assert b.score == pytest.approx(a.score, abs=1 / 65535)
    for store in (remote, local):
        assert store.related_articles(version, "no-such-article", limit) is None
        assert store.related_articles("20000101T000000Z-other", loaded.articles[0].id) is None


def test_redis_read_matches_neighbours_and_articles(
    redis_client: redis.Redis, loaded: LoadedModel
) -> None:
    publish(redis_client, loaded)
    store = RedisStore(redis_client)
    for article in loaded.articles[:40]:
        read = store.related_articles(loaded.version, article.id)
        neighbours = store.neighbours(loaded.version, article.id)
        assert read is not None and neighbours is not None
        # The same float32 arithmetic: the scores are identical, not just close.
        assert list(read.neighbours) == neighbours
        assert list(read.metas) == store.articles(loaded.version, [n.id for n in neighbours])
        assert read.source == store.articles(loaded.version, [article.id])[0]
        assert read.complete


def test_redis_read_on_the_layout_contract(redis_client: redis.Redis) -> None:
    # Rows: 0 x -> [y, z]; 1 y -> []; 2 z -> [x, ghost (no metadata)].
    write_version(redis_client)
    store = RedisStore(redis_client)
    read = store.related_articles(V, "x")
    assert read is not None and read.complete
    assert read.source is not None and read.source.tags == ("Politics", "USA")
    assert [n.id for n in read.neighbours] == ["y", "z"]
    assert [n.score for n in read.neighbours] == pytest.approx([0.9, 0.25], abs=1 / 65535)
    assert [m.id for m in read.metas if m is not None] == ["y", "z"]
    first = store.related_articles(V, "x", 1)
    assert first is not None and not first.complete
    assert [n.id for n in first.neighbours] == ["y"]
    empty = store.related_articles(V, "y", 5)
    assert empty is not None and empty.complete and list(empty.neighbours) == []
    # A neighbour row without metadata cannot be named: left out, as neighbours() does.
    ghost = store.related_articles(V, "z")
    assert ghost is not None and [n.id for n in ghost.neighbours] == ["x"]
    assert len(ghost.metas) == 1
    assert store.related_articles(V, "nope") is None


def test_redis_read_survives_a_script_flush(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    assert store.related_articles(V, "x") is not None
    redis_client.script_flush()
    read = store.related_articles(V, "x", 1)
    assert read is not None and [n.id for n in read.neighbours] == ["y"]


def test_fast_meta_decoding_agrees_with_the_layout_decoder() -> None:
    blob = keys.encode_meta(
        "a-1", 'Tïtle "q"', "https://x.test/a", "World", None, "", ["A", "B"], ["a", "b"]
    )
    record = keys.decode_meta(blob)
    assert decode_meta(blob) == ArticleMeta(
        **{**record, "tags": tuple(record["tags"]), "tag_keys": tuple(record["tag_keys"])}
    )
    with pytest.raises(ValueError):
        decode_meta(json.dumps(["a-1", "t"]).encode())


def test_lazy_metas_decode_only_what_is_read() -> None:
    decoded: list[bytes] = []

    def decode(raw: bytes) -> ArticleMeta | None:
        decoded.append(raw)
        return None if raw == b"none" else decode_meta(raw)

    blobs = [keys.encode_meta(f"a{i}", "", "", "", None, "", [], []) for i in range(5)]
    metas = LazyMetas([*blobs, b"none"], decode)
    assert len(metas) == 6 and decoded == []
    first = metas[0]
    assert first is not None and first.id == "a0"
    assert metas[0] is first and decoded == [blobs[0]]  # decoded once, then remembered
    assert metas[5] is None and metas[5] is None and decoded == [blobs[0], b"none"]
    assert [m.id for m in metas[1:3] if m] == ["a1", "a2"]
    assert [m.id if m else None for m in metas][-2:] == ["a4", None]
    with pytest.raises(IndexError):
        metas[6]


class GhostStore(LocalStore):
    """A local store whose first neighbours have no metadata (a broken version)."""

    # More than the read's margin for items that flags or rules drop.
    GHOSTS = tuple(f"ghost-{i}" for i in range(RULES_MARGIN + 3))

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.reads: list[int | None] = []

    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        real = super().neighbours(version, article_id)
        if real is None:
            return None
        return [Neighbour(g, 1.0) for g in self.GHOSTS] + real

    def related_articles(
        self, version: str, article_id: str, limit: int | None = None
    ) -> RelatedRead | None:
        self.reads.append(limit)
        return super().related_articles(version, article_id, limit)


def test_neighbours_without_metadata_make_the_endpoint_read_on(loaded: LoadedModel) -> None:
    store = GhostStore(loaded)
    client: FlaskClient = create_app({"STORE": store, "RESPONSE_CACHE_SIZE": 0}).test_client()
    article = loaded.articles[0]
    body = client.get(URL.format(article.id), query_string={"k": 4}).get_json()
    want = [n for n, _ in loaded.model.neighbours(article.id) if n != article.id][:4]
    assert [item["id"] for item in body["items"]] == want
    # The limited read came back short (ghosts took places), so the whole list was read.
    assert store.reads == [4 + 1 + RULES_MARGIN, None]
    store.reads.clear()
    client.get(URL.format(loaded.articles[1].id), query_string={"k": 50})
    assert store.reads == [50 + 1 + RULES_MARGIN]  # complete already: no second read


def test_version_cache_passes_the_read_through(loaded: LoadedModel) -> None:
    class Counting(LocalStore):
        calls = 0

        def related_articles(
            self, version: str, article_id: str, limit: int | None = None
        ) -> RelatedRead | None:
            Counting.calls += 1
            return super().related_articles(version, article_id, limit)

    inner = Counting(loaded)
    store: Store = VersionCache(inner, ttl=1.0)
    article = loaded.articles[0].id
    read = store.related_articles(loaded.version, article, 3)
    assert Counting.calls == 1
    assert plain(read) == plain(inner.related_articles(loaded.version, article, 3))
