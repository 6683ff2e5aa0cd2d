"""RedisStore against a real Redis, on versions written key by key from the layout contract."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from service.redis import keys
from service.redis.store import MAX_IDS_PER_CALL, RedisStore
from service.store.base import ArticleMeta, StoreUnavailable, VersionInfo

V = "20260102T030405Z-0123456789"


def meta(article_id: str, title: str = "", tags: tuple[str, ...] = ()) -> bytes:
    return keys.encode_meta(
        article_id,
        title or f"title of {article_id}",
        f"https://x.test/{article_id}",
        "world",
        "2026-01-02T03:04:05Z",
        "",
        list(tags),
        [t.lower() for t in tags],
    )


def write_version(client: redis.Redis, version: str = V) -> None:
    """Rows: 0 x -> [y, z]; 1 y -> []; 2 z -> [x, ghost]; 3 ghost: a row without metadata."""
    client.hset(keys.index_key(version), mapping={"x": 0, "y": 1, "z": 2})
    pack = keys.encode_neighbours
    client.set(keys.neighbours_key(version, 0), pack(np.array([1, 2]), np.array([0.9, 0.25])))
    client.set(keys.neighbours_key(version, 1), b"")
    client.set(keys.neighbours_key(version, 2), pack(np.array([0, 3]), np.array([0.5, 0.4])))
    client.set(keys.meta_key(version, 0), meta("x", "Ex", ("Politics", "USA")))
    client.set(keys.meta_key(version, 1), meta("y"))
    client.set(keys.meta_key(version, 2), meta("z"))
    client.hset(
        keys.info_key(version),
        mapping={
            "version": version,
            "built_at": "2026-01-02T03:04:05Z",
            "published_at": "2026-01-02T04:00:00Z",
            "articles": 3,
            "k": 2,
        },
    )
    client.set(keys.CURRENT, version)


def test_current_version(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    assert store.current_version() is None
    write_version(redis_client)
    assert store.current_version() == VersionInfo(
        version=V,
        built_at="2026-01-02T03:04:05Z",
        published_at="2026-01-02T04:00:00Z",
        articles=3,
        k=2,
    )
    redis_client.hset(keys.info_key(V), "published_at", "")
    info = store.current_version()
    assert info is not None and info.published_at is None


def test_neighbours(redis_url: str, redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_url)
    try:
        got = store.neighbours(V, "x")
        assert got is not None
        assert [n.id for n in got] == ["y", "z"]
        assert got[0].score == pytest.approx(0.9, abs=1 / 65535)
        assert got[1].score == pytest.approx(0.25, abs=1 / 65535)
        assert store.neighbours(V, "y") == []
        # A neighbour row without metadata cannot be named, so it is left out.
        only = store.neighbours(V, "z")
        assert only is not None and [n.id for n in only] == ["x"]
        assert only[0].score == pytest.approx(0.5, abs=1 / 65535)
        assert store.neighbours(V, "nope") is None
        assert store.neighbours("20000101T000000Z-other", "x") is None
    finally:
        store.close()


def test_articles(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    got = store.articles(V, ["z", "nope", "x"])
    assert got == [
        ArticleMeta(
            id="z",
            title="title of z",
            url="https://x.test/z",
            section="world",
            published_at="2026-01-02T03:04:05Z",
            image_url="",
            tags=(),
            tag_keys=(),
        ),
        None,
        ArticleMeta(
            id="x",
            title="Ex",
            url="https://x.test/x",
            section="world",
            published_at="2026-01-02T03:04:05Z",
            image_url="",
            tags=("Politics", "USA"),
            tag_keys=("politics", "usa"),
        ),
    ]
    assert store.articles(V, []) == []
    assert store.articles("20000101T000000Z-other", ["x"]) == [None]


def test_many_articles_are_read_in_chunks(redis_client: redis.Redis) -> None:
    n = MAX_IDS_PER_CALL * 2 + 17
    pipe = redis_client.pipeline(transaction=False)
    pipe.hset(keys.index_key(V), mapping={f"a{i}": i for i in range(n)})
    for i in range(n):
        pipe.set(keys.meta_key(V, i), meta(f"a{i}"))
    pipe.execute()
    wanted = [f"a{i}" if i % 7 else f"missing{i}" for i in range(n)]
    got = RedisStore(redis_client).articles(V, wanted)
    assert len(got) == n
    for article_id, item in zip(wanted, got, strict=True):
        if article_id.startswith("missing"):
            assert item is None
        else:
            assert item is not None and item.id == article_id


def test_scripts_reload_after_a_script_flush(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    assert store.neighbours(V, "x") is not None
    redis_client.script_flush()
    got = store.neighbours(V, "x")
    assert got is not None and len(got) == 2
    assert store.current_version() is not None


def test_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", timeout=0.2)
    assert store.ping() is False
    for call in (
        store.current_version,
        lambda: store.neighbours(V, "x"),
        lambda: store.articles(V, ["x"]),
    ):
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="redis unavailable"):
            call()
        assert time.perf_counter() - started < 2
    store.close()


def test_a_stalled_redis_times_out_into_store_unavailable(
    redis_url: str, redis_client: redis.Redis
) -> None:
    write_version(redis_client)
    store = RedisStore(redis_url, timeout=0.2)
    assert store.neighbours(V, "x") is not None  # connection and scripts warmed up
    redis_client.client_pause(1500, all=True)
    try:
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            store.neighbours(V, "x")
        assert time.perf_counter() - started < 1.2
    finally:
        redis_client.client_unpause()
        store.close()
    assert RedisStore(redis_url).ping() is True


def test_a_store_built_from_a_client_does_not_close_it(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    assert store.ping() is True
    store.close()
    assert redis_client.ping() is True
