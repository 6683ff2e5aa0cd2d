"""The Redis store's metadata cache: same answers as the uncached read, and never stale past
the next (version, seq) the store sees."""

from __future__ import annotations

import json

import pytest
import redis
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from service import create_app
from service.redis import keys
from service.redis.meta_cache import MetaCache
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.related import render
from service.store.base import ArticleMeta, RelatedRead
from tests.test_redis_store import V, meta, write_version


def plain(read: RelatedRead | None) -> tuple[object, ...] | None:
    # Unlike test_related_read's, keeps the scores: the two reads must give identical floats.
    if read is None:
        return None
    return (read.source, list(read.neighbours), list(read.metas), read.complete)


@pytest.mark.parametrize("limit", [None, 0, 1, 7, 500])
def test_cached_reads_equal_uncached_reads(
    redis_client: redis.Redis, loaded: LoadedModel, limit: int | None
) -> None:
    publish(redis_client, loaded)
    uncached = RedisStore(redis_client, meta_cache_size=0)
    cached = RedisStore(redis_client, meta_cache_size=64)
    info = cached.current_version()
    assert info is not None and cached.meta_cache is not None
    assert cached.meta_cache.scope == (loaded.version, 0)
    # Twice over: the first pass fills the (small, so also evicting) cache, the second hits it.
    for _ in range(2):
        for article in loaded.articles[:60]:
            expected = uncached.related_articles(loaded.version, article.id, limit)
            assert plain(cached.related_articles(loaded.version, article.id, limit)) == plain(
                expected
            ), article.id
    assert 0 < len(cached.meta_cache) <= 64
    assert cached.related_articles(loaded.version, "no-such-article", limit) is None


def test_an_edit_shows_once_the_store_sees_the_new_seq(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    store.current_version()
    before = store.related_articles(V, "x")
    assert before is not None and before.metas[0] is not None
    assert before.metas[0].title == "title of y"
    # What an incremental edit does: rewrite y's metadata and bump the version's seq.
    redis_client.set(keys.meta_key(V, 1), meta("y", "Edited"))
    redis_client.hincrby(keys.info_key(V), "seq", 1)
    info = store.current_version()
    assert info is not None and info.seq == 1
    after = store.related_articles(V, "x")
    assert after is not None and after.metas[0] is not None
    assert after.metas[0].title == "Edited"


def test_a_deleted_neighbour_is_left_out(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    store.current_version()
    read = store.related_articles(V, "z")
    # Row 3 never had metadata: not named, not cached.
    assert read is not None and [n.id for n in read.neighbours] == ["x"]
    assert store.meta_cache is not None
    assert store.meta_cache.get([3]) == [None]
    assert store.meta_cache.get([0])[0] is not None


def test_rows_fetched_under_an_old_scope_are_not_kept() -> None:
    cache = MetaCache(10)
    cache.use("v1", 0)
    a = ArticleMeta("a", "A", "", "", None, "", (), ())
    stale_scope = cache.scope
    assert stale_scope is not None
    cache.use("v1", 1)  # an update landed while a reader was fetching
    cache.put(stale_scope, [(0, a)])
    assert cache.get([0]) == [None]
    cache.put(("v1", 1), [(0, a)])
    assert cache.get([0]) == [a]


def test_cache_is_bounded_lru() -> None:
    cache = MetaCache(2)
    cache.use("v", 0)
    metas = [ArticleMeta(str(i), "", "", "", None, "", (), ()) for i in range(3)]
    cache.put(("v", 0), [(0, metas[0]), (1, metas[1])])
    cache.get([0])  # 0 is now the most recently used
    cache.put(("v", 0), [(2, metas[2])])
    assert cache.get([0, 1, 2]) == [metas[0], None, metas[2]]
    assert len(cache) == 2


def test_render_is_the_compact_json_of_the_answer() -> None:
    source = ArticleMeta("s", "S", "", "", None, "", ("Kyiv", "Sheet"), ("kyiv",))
    a = ArticleMeta(
        "a", 'Quote " and ünïcode', "https://x/a", "World", None, "", ("kyiv",), ("kyiv",)
    )
    b = ArticleMeta("b", "B", "u", "", "2026-01-01T00:00:00+00:00", "i", (), ())
    data = render("s", "v1", [(a, 0.123456), (b, 1.0)], source)
    expected = {
        "article_id": "s",
        "model_version": "v1",
        "items": [
            {
                "id": "a",
                "title": 'Quote " and ünïcode',
                "url": "https://x/a",
                "section": "World",
                "published_at": None,
                "image_url": "",
                "score": 0.1235,
                "shared_tags": ["kyiv"],
            },
            {
                "id": "b",
                "title": "B",
                "url": "u",
                "section": "",
                "published_at": "2026-01-01T00:00:00+00:00",
                "image_url": "i",
                "score": 1.0,
                "shared_tags": [],
            },
        ],
    }
    assert data == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()


def test_api_serves_an_edit_within_the_version_ttl(
    redis_client: redis.Redis, redis_url: str
) -> None:
    write_version(redis_client)
    app = create_app({"REDIS_URL": redis_url, "VERSION_TTL": 0, "RESPONSE_CACHE_SIZE": 16})
    client: FlaskClient = app.test_client()
    first = client.get("/v1/articles/x/related")
    assert first.status_code == 200
    assert first.get_json()["items"][0]["title"] == "title of y"
    redis_client.set(keys.meta_key(V, 1), meta("y", "Edited"))
    redis_client.hincrby(keys.info_key(V), "seq", 1)
    second = client.get("/v1/articles/x/related")
    assert second.get_json()["items"][0]["title"] == "Edited"
    assert second.headers["ETag"] != first.headers["ETag"]


def test_a_known_row_is_read_with_one_get(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    store.current_version()
    first = store.related_articles(V, "x")
    redis_client.config_resetstat()
    again = store.related_articles(V, "x")
    assert plain(again) == plain(first)
    stats = redis_client.info("commandstats")
    assert "cmdstat_evalsha" not in stats and stats["cmdstat_get"]["calls"] == 1


def test_a_cached_row_whose_list_is_gone_reads_as_unknown(redis_client: redis.Redis) -> None:
    write_version(redis_client)
    store = RedisStore(redis_client)
    store.current_version()
    assert store.related_articles(V, "x") is not None
    # A delete removes the list and the index entry (and bumps the seq, not done here, so
    # the cached row is still there when the list is read).
    redis_client.delete(keys.neighbours_key(V, 0))
    redis_client.hdel(keys.index_key(V), "x")
    assert store.related_articles(V, "x") is None
    assert store.meta_cache is not None and store.meta_cache.row_of("x") is None


def test_the_scope_never_goes_back_to_an_older_seq() -> None:
    # Two requests read the live version around an update and report in either order.
    cache = MetaCache(10)
    a = ArticleMeta("a", "A", "", "", None, "", (), ())
    cache.use("v1", 6)
    cache.put(("v1", 6), [(0, a)])
    cache.use("v1", 5)
    assert cache.scope == ("v1", 6) and cache.get([0]) == [a]
    cache.put(("v1", 5), [(1, a)])  # a reader that fetched before the update
    assert cache.get([1]) == [None]
    # Another version (a rollback) is always taken.
    cache.use("v0", 2)
    assert cache.scope == ("v0", 2) and cache.get([0]) == [None]
