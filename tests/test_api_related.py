"""``GET /v1/articles/<id>/related``: results, filters, errors, caching, CORS, both store modes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from models.artifact import LoadedModel, load_model, save_model
from models.tagnorm import normalize_tag
from service import create_app
from service.store.base import ArticleMeta, Neighbour, VersionInfo
from service.store.cache import VersionCache
from service.store.local import LocalStore
from tests.service_fixtures import (
    BUILT_AT,
    NOW,
    embedded_app,
    redis_app,
)

URL = "/v1/articles/{}/related"


@pytest.fixture(scope="module")
def source_id(loaded: LoadedModel) -> str:
    """An 'Earnings' article whose neighbours mix sections and ages (so filters bite)."""
    for article in loaded.articles:
        neighbours = loaded.model.neighbours(article.id)
        sections = {loaded.articles[loaded.model.index_[n]].section for n, _ in neighbours}
        recent = expected_ids(loaded, article.id, k=50, max_age_days=7)
        if (
            article.section == "Earnings"
            and len(neighbours) == 30
            and len(sections) > 1
            and 3 <= len(recent) <= 25
        ):
            return article.id
    raise AssertionError("no suitable test article")


def expected_ids(
    loaded: LoadedModel,
    article_id: str,
    *,
    k: int = 6,
    exclude: Sequence[str] = (),
    section: str | None = None,
    max_age_days: int | None = None,
    now: datetime = NOW,
) -> list[str]:
    """Oracle: the stored neighbour list, filtered in order, straight from the model."""
    by_id = {a.id: a for a in loaded.articles}
    cutoff = None if max_age_days is None else now - timedelta(days=max_age_days)
    out = []
    for neighbour, _ in loaded.model.neighbours(article_id):
        article = by_id[neighbour]
        if neighbour == article_id or neighbour in exclude:
            continue
        if section is not None and article.section.casefold() != section.casefold():
            continue
        if cutoff is not None:
            if article.published_at is None:
                continue
            if datetime.fromisoformat(article.published_at) < cutoff:
                continue
        out.append(neighbour)
        if len(out) == k:
            break
    return out


def ids_of(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


def assert_error(response: Any, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert set(body) <= {"error", "message", "parameter"}
    assert body["error"] and body["message"]
    if parameter is not None:
        assert body["parameter"] == parameter
        assert parameter in body["message"]
    return body


# ------------------------------------------------------------------------------- results


def test_default_answer_is_the_stored_top_6_with_metadata(
    client: FlaskClient, loaded: LoadedModel, source_id: str
) -> None:
    response = client.get(URL.format(source_id))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"article_id", "model_version", "items"}
    assert body["article_id"] == source_id
    assert body["model_version"] == loaded.version
    assert ids_of(body) == expected_ids(loaded, source_id)
    scores = dict(loaded.model.neighbours(source_id))
    by_id = {a.id: a for a in loaded.articles}
    for item in body["items"]:
        article = by_id[item["id"]]
        assert set(item) == {
            "id",
            "title",
            "url",
            "section",
            "published_at",
            "image_url",
            "score",
            "shared_tags",
        }
        assert item["title"] == article.title
        assert item["url"] == article.url
        assert item["section"] == article.section
        assert item["published_at"] == article.published_at
        assert item["image_url"] == article.image_url
        assert item["score"] == pytest.approx(scores[item["id"]], abs=1e-4)
    assert [i["score"] for i in body["items"]] == sorted(
        (i["score"] for i in body["items"]), reverse=True
    )


@pytest.mark.parametrize("k", [1, 6, 17, 50])
def test_k_limits_the_list(
    client: FlaskClient, loaded: LoadedModel, source_id: str, k: int
) -> None:
    body = client.get(URL.format(source_id), query_string={"k": k}).get_json()
    # The model stores 30 neighbours: k=50 returns all of them.
    assert ids_of(body) == expected_ids(loaded, source_id, k=k)
    assert len(body["items"]) == min(k, 30)


def test_head_answers_like_get_without_body(client: FlaskClient, source_id: str) -> None:
    get = client.get(URL.format(source_id))
    head = client.head(URL.format(source_id))
    assert head.status_code == 200
    assert head.data == b""
    assert head.headers["ETag"] == get.headers["ETag"]


def test_shared_tags_are_the_neighbours_display_tags_shared_most_specific_first(
    client: FlaskClient, loaded: LoadedModel
) -> None:
    tagger = loaded.model.tags_
    by_id = {a.id: a for a in loaded.articles}
    seen_shared = 0
    for article in loaded.articles[:60]:
        body = client.get(URL.format(article.id), query_string={"k": 10}).get_json()
        own = {key for key in tagger.analyze(article.tags, tagger.vocabulary_)}
        for item in body["items"]:
            other = by_id[item["id"]]
            want = {
                t for t in other.tags if normalize_tag(t) in own and tagger.weight(normalize_tag(t))
            }
            assert set(item["shared_tags"]) == want
            weights = [tagger.weight(normalize_tag(t)) for t in item["shared_tags"]]
            assert weights == sorted(weights, reverse=True)
            seen_shared += bool(item["shared_tags"])
    assert seen_shared > 10  # the check above is not vacuous


# ------------------------------------------------------------------------------- filters


def test_exclude_drops_ids_and_the_list_refills_in_order(
    client: FlaskClient, loaded: LoadedModel, source_id: str
) -> None:
    top = expected_ids(loaded, source_id)
    dropped = [top[0], top[3]]
    body = client.get(URL.format(source_id), query_string={"exclude": ",".join(dropped)})
    assert ids_of(body.get_json()) == expected_ids(loaded, source_id, exclude=dropped)
    assert len(body.get_json()["items"]) == 6
    repeated = client.get(
        URL.format(source_id), query_string=[("exclude", dropped[0]), ("exclude", dropped[1])]
    )
    assert repeated.get_json() == body.get_json()


def test_exclude_of_unknown_or_own_id_is_harmless(
    client: FlaskClient, loaded: LoadedModel, source_id: str
) -> None:
    body = client.get(
        URL.format(source_id), query_string={"exclude": f"{source_id},never-seen-1, ,"}
    ).get_json()
    assert ids_of(body) == expected_ids(loaded, source_id)


def test_exclude_accepts_100_ids(client: FlaskClient, source_id: str) -> None:
    ids = ",".join(f"x-{i}" for i in range(100))
    assert client.get(URL.format(source_id), query_string={"exclude": ids}).status_code == 200


@pytest.mark.parametrize(
    "exclude",
    ["good-1,bad id", "a/b", "é", "x" * 129, ",".join(f"x-{i}" for i in range(101))],
    ids=["space", "slash", "non-ascii", "too-long", "101-ids"],
)
def test_bad_exclude_is_400_naming_exclude(
    client: FlaskClient, source_id: str, exclude: str
) -> None:
    response = client.get(URL.format(source_id), query_string={"exclude": exclude})
    assert_error(response, 400, "exclude")


def test_section_filter_is_exact_and_case_insensitive(
    client: FlaskClient, loaded: LoadedModel, source_id: str
) -> None:
    body = client.get(URL.format(source_id), query_string={"section": "eArNiNgS"}).get_json()
    assert ids_of(body) == expected_ids(loaded, source_id, section="Earnings")
    assert body["items"] and {i["section"] for i in body["items"]} == {"Earnings"}
    deals = client.get(URL.format(source_id), query_string={"section": "Deals", "k": 50})
    assert ids_of(deals.get_json()) == expected_ids(loaded, source_id, section="Deals", k=50)
    # Exact: a prefix of a section name matches nothing.
    partial = client.get(URL.format(source_id), query_string={"section": "Earn"}).get_json()
    assert partial["items"] == []


def test_empty_section_means_no_filter(
    client: FlaskClient, loaded: LoadedModel, source_id: str
) -> None:
    body = client.get(URL.format(source_id), query_string={"section": ""}).get_json()
    assert ids_of(body) == expected_ids(loaded, source_id)


def test_too_long_section_is_400(client: FlaskClient, source_id: str) -> None:
    response = client.get(URL.format(source_id), query_string={"section": "s" * 201})
    assert_error(response, 400, "section")


@pytest.mark.parametrize("days", [0, 3, 7, 14, 100])
def test_max_age_days_is_relative_to_the_configured_clock(
    client: FlaskClient, loaded: LoadedModel, source_id: str, days: int
) -> None:
    body = client.get(
        URL.format(source_id), query_string={"max_age_days": days, "k": 50}
    ).get_json()
    want = expected_ids(loaded, source_id, k=50, max_age_days=days)
    assert ids_of(body) == want
    cutoff = NOW - timedelta(days=days)
    assert all(datetime.fromisoformat(i["published_at"]) >= cutoff for i in body["items"])


def test_max_age_days_filters_some_but_not_all(loaded: LoadedModel, source_id: str) -> None:
    # Guards the test above: 7 days must be a real filter on this article's neighbours.
    everything = expected_ids(loaded, source_id, k=50)
    recent = expected_ids(loaded, source_id, k=50, max_age_days=7)
    assert 0 < len(recent) < len(everything)


def test_clock_comes_from_config(model_dir: Path, loaded: LoadedModel, source_id: str) -> None:
    later = NOW + timedelta(days=5)
    app = embedded_app(model_dir, CLOCK=lambda: later)
    body = (
        app.test_client()
        .get(URL.format(source_id), query_string={"max_age_days": 7, "k": 50})
        .get_json()
    )
    assert ids_of(body) == expected_ids(loaded, source_id, k=50, max_age_days=7, now=later)
    assert ids_of(body) != expected_ids(loaded, source_id, k=50, max_age_days=7)


def test_filters_combine(client: FlaskClient, loaded: LoadedModel, source_id: str) -> None:
    first = expected_ids(loaded, source_id, section="Earnings", k=1)
    query = {"section": "earnings", "max_age_days": 14, "exclude": first[0], "k": 4}
    body = client.get(URL.format(source_id), query_string=query).get_json()
    assert ids_of(body) == expected_ids(
        loaded, source_id, section="Earnings", max_age_days=14, exclude=first, k=4
    )


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("k", ["0", "51", "abc", "-1", "1.5", "", " 3", "²", "1e1", "0006000"])
def test_bad_k_is_400_naming_k(client: FlaskClient, source_id: str, k: str) -> None:
    response = client.get(URL.format(source_id), query_string={"k": k})
    assert_error(response, 400, "k")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("days", ["-1", "abc", "1.5", "", "100001"])
def test_bad_max_age_days_is_400(client: FlaskClient, source_id: str, days: str) -> None:
    response = client.get(URL.format(source_id), query_string={"max_age_days": days})
    assert_error(response, 400, "max_age_days")


@pytest.mark.parametrize("article_id", ["reuters-999999999", "no-such-article", "bad%20id", "é"])
def test_unknown_article_is_404(client: FlaskClient, article_id: str) -> None:
    body = assert_error(client.get(URL.format(article_id)), 404, "article_id")
    assert body["error"] == "not_found"


def test_parameters_are_checked_before_the_article(client: FlaskClient) -> None:
    assert_error(client.get(URL.format("no-such-article"), query_string={"k": "0"}), 400, "k")


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_other_methods_are_405_json(client: FlaskClient, source_id: str, method: str) -> None:
    response = getattr(client, method)(URL.format(source_id))
    body = assert_error(response, 405)
    assert body["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


# ------------------------------------------------------------------------------- caching


def test_cache_headers(client: FlaskClient, source_id: str) -> None:
    response = client.get(URL.format(source_id))
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Last-Modified"] == format_datetime(BUILT_AT, usegmt=True)
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10


def test_cache_max_age_is_configurable(model_dir: Path, source_id: str) -> None:
    app = embedded_app(model_dir, CACHE_MAX_AGE=60)
    response = app.test_client().get(URL.format(source_id))
    assert response.headers["Cache-Control"] == "public, max-age=60"


def test_if_none_match_gets_304(client: FlaskClient, source_id: str) -> None:
    first = client.get(URL.format(source_id), query_string={"k": 4})
    etag = first.headers["ETag"]
    again = client.get(
        URL.format(source_id), query_string={"k": 4}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "public, max-age=300"
    weak = client.get(
        URL.format(source_id), query_string={"k": 4}, headers={"If-None-Match": f'"x", W/{etag}'}
    )
    assert weak.status_code == 304
    star = client.get(URL.format(source_id), query_string={"k": 4}, headers={"If-None-Match": "*"})
    assert star.status_code == 304
    stale = client.get(
        URL.format(source_id), query_string={"k": 4}, headers={"If-None-Match": '"x"'}
    )
    assert stale.status_code == 200
    assert stale.get_json() == first.get_json()


def test_304_also_with_the_clock_dependent_filter(client: FlaskClient, source_id: str) -> None:
    query = {"max_age_days": 7}
    etag = client.get(URL.format(source_id), query_string=query).headers["ETag"]
    again = client.get(URL.format(source_id), query_string=query, headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_etag_changes_with_the_query_not_with_its_spelling(
    client: FlaskClient, source_id: str
) -> None:
    def etag(**query: Any) -> str:
        return str(client.get(URL.format(source_id), query_string=query).headers["ETag"])

    base = etag()
    variants = {
        etag(k=7),
        etag(exclude="a-1"),
        etag(section="Deals"),
        etag(max_age_days=7),
        etag(k=7, exclude="a-1"),
    }
    assert base not in variants and len(variants) == 5
    assert etag(k=6) == base  # the default, spelt out
    assert etag(exclude="a-1,b-2") == etag(exclude="b-2,a-1,a-1")
    assert etag(section="deals") == etag(section="DEALS")
    assert etag(unknown_param="x") == base  # cache busters do not matter


def test_etag_differs_between_articles(client: FlaskClient, loaded: LoadedModel) -> None:
    a, b = (x.id for x in loaded.articles[:2])
    assert client.get(URL.format(a)).headers["ETag"] != client.get(URL.format(b)).headers["ETag"]


def test_with_a_clock_filter_the_etag_follows_the_result(model_dir: Path, source_id: str) -> None:
    query = {"max_age_days": 7, "k": 50}
    now = embedded_app(model_dir).test_client().get(URL.format(source_id), query_string=query)
    later_app = embedded_app(model_dir, CLOCK=lambda: NOW + timedelta(days=5))
    later = later_app.test_client().get(
        URL.format(source_id), query_string=query, headers={"If-None-Match": now.headers["ETag"]}
    )
    # The items changed with the clock: the old ETag must not get a 304.
    assert later.status_code == 200
    assert later.headers["ETag"] != now.headers["ETag"]


# ------------------------------------------------------------------------------- CORS


@pytest.fixture(scope="module")
def cors_app(model_dir: Path) -> Flask:
    return embedded_app(model_dir, CORS_ORIGINS="https://a.example, https://B.example/")


def test_cors_allowed_origin_is_echoed(cors_app: Flask, source_id: str) -> None:
    response = cors_app.test_client().get(
        URL.format(source_id), headers={"Origin": "https://a.example"}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert "Origin" in response.headers["Vary"]
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    other = cors_app.test_client().get(
        URL.format(source_id), headers={"Origin": "https://b.example"}
    )
    assert other.headers["Access-Control-Allow-Origin"] == "https://b.example"


def test_cors_other_origin_gets_no_allow_header(cors_app: Flask, source_id: str) -> None:
    client = cors_app.test_client()
    for origin in ("https://evil.example", "https://a.example.evil", "http://a.example"):
        response = client.get(URL.format(source_id), headers={"Origin": origin})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Origin" in response.headers["Vary"]


def test_cors_preflight(cors_app: Flask, source_id: str) -> None:
    client = cors_app.test_client()
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = client.options(
        URL.format(source_id),
        headers={
            "Origin": "https://a.example",
            **preflight,
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert "GET" in allowed.headers["Access-Control-Allow-Methods"]
    assert "If-None-Match" in allowed.headers["Access-Control-Allow-Headers"]
    assert int(allowed.headers["Access-Control-Max-Age"]) > 0
    denied = client.options(
        URL.format(source_id), headers={"Origin": "https://evil.example", **preflight}
    )
    assert "Access-Control-Allow-Origin" not in denied.headers
    assert "Access-Control-Allow-Methods" not in denied.headers


def test_cors_applies_to_errors_too(cors_app: Flask) -> None:
    response = cors_app.test_client().get(
        URL.format("no-such-article"), headers={"Origin": "https://a.example"}
    )
    assert response.status_code == 404
    assert response.headers["Access-Control-Allow-Origin"] == "https://a.example"


def test_no_cors_headers_without_an_allow_list(client: FlaskClient, source_id: str) -> None:
    response = client.get(URL.format(source_id), headers={"Origin": "https://a.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Vary" not in response.headers


# ------------------------------------------------------------------------------- Redis mode


def test_redis_mode_answers_like_embedded_mode(
    published: str, client: FlaskClient, source_id: str, loaded: LoadedModel
) -> None:
    remote = redis_app(published).test_client()
    queries: list[dict[str, Any]] = [
        {},
        {"k": 50},
        {"section": "earnings", "k": 10},
        {"max_age_days": 7, "k": 50},
        {"exclude": ",".join(expected_ids(loaded, source_id, k=3))},
    ]
    for article_id in (source_id, *(a.id for a in loaded.articles[:20])):
        for query in queries:
            here = client.get(URL.format(article_id), query_string=query)
            there = remote.get(URL.format(article_id), query_string=query)
            assert there.status_code == here.status_code == 200
            a, b = here.get_json(), there.get_json()
            assert ids_of(b) == ids_of(a), (article_id, query)
            for x, y in zip(a["items"], b["items"], strict=True):
                assert y["score"] == pytest.approx(x["score"], abs=2e-4)
                assert {**y, "score": 0} == {**x, "score": 0}
            assert b["model_version"] == a["model_version"]
            # Same version and query: the same ETag whichever store answers.
            assert there.headers["ETag"] == here.headers["ETag"]


def test_redis_mode_errors_and_304(published: str, source_id: str) -> None:
    client = redis_app(published).test_client()
    assert_error(client.get(URL.format("no-such-article")), 404, "article_id")
    assert_error(client.get(URL.format(source_id), query_string={"k": 0}), 400, "k")
    etag = client.get(URL.format(source_id)).headers["ETag"]
    assert client.get(URL.format(source_id), headers={"If-None-Match": etag}).status_code == 304


def test_redis_mode_with_nothing_published_is_503(redis_url: str, source_id: str) -> None:
    response = redis_app(redis_url, RETRY_AFTER=7).test_client().get(URL.format(source_id))
    body = assert_error(response, 503)
    assert body["error"] == "unavailable"
    assert response.headers["Retry-After"] == "7"


def test_redis_unreachable_is_503_with_retry_after(source_id: str) -> None:
    app = redis_app("redis://127.0.0.1:1/0")
    response = app.test_client().get(URL.format(source_id))
    body = assert_error(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in body["message"]  # connection details stay in the log


def test_a_new_version_is_served_without_restart(
    published: str, redis_client: redis.Redis, tmp_path: Path, loaded: LoadedModel, source_id: str
) -> None:
    from service.redis.publish import publish

    client = redis_app(published, VERSION_TTL=0).test_client()
    before = client.get(URL.format(source_id))
    # The same model saved again at another time: a new version id, the same neighbours.
    newer = tmp_path / "newer"
    save_model(loaded.model, loaded.articles, newer, created_at=datetime(1987, 4, 1, tzinfo=UTC))
    publish(redis_client, load_model(newer))
    after = client.get(URL.format(source_id), headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.get_json()["model_version"] != before.get_json()["model_version"]
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.headers["Last-Modified"] == "Wed, 01 Apr 1987 00:00:00 GMT"
    assert ids_of(after.get_json()) == ids_of(before.get_json())


def test_the_first_publish_is_seen_at_once_despite_the_version_ttl(
    redis_url: str, redis_client: redis.Redis, loaded: LoadedModel, source_id: str
) -> None:
    from service.redis import publish

    client = redis_app(redis_url, VERSION_TTL=60).test_client()
    assert client.get(URL.format(source_id)).status_code == 503
    publish.publish(redis_client, loaded)
    # "Nothing published" is never cached.
    assert client.get(URL.format(source_id)).status_code == 200


# ------------------------------------------------------------------------------- caches


class CountingStore(LocalStore):
    """The real local store, counting the reads that reach it."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.calls: Counter[str] = Counter()

    def current_version(self) -> VersionInfo:
        self.calls["current_version"] += 1
        return super().current_version()

    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        self.calls["neighbours"] += 1
        return super().neighbours(version, article_id)

    def articles(self, version: str, ids: Sequence[str]) -> list[ArticleMeta | None]:
        self.calls["articles"] += 1
        return super().articles(version, ids)


def test_version_cache_asks_the_store_once_per_ttl(loaded: LoadedModel) -> None:
    inner = CountingStore(loaded)
    now = [100.0]
    store = VersionCache(inner, ttl=1.0, clock=lambda: now[0])
    first = store.current_version()
    now[0] += 0.9
    assert store.current_version() == first
    assert inner.calls["current_version"] == 1
    now[0] += 0.2
    assert store.current_version() == first
    assert inner.calls["current_version"] == 2
    version = first.version if first else ""
    assert store.neighbours(version, loaded.articles[0].id) == inner.neighbours(
        version, loaded.articles[0].id
    )
    assert store.ping()


def test_a_repeated_query_is_answered_from_the_response_cache(
    loaded: LoadedModel, source_id: str
) -> None:
    store = CountingStore(loaded)
    client = create_app({"STORE": store, "RESPONSE_CACHE_SIZE": 2}).test_client()
    first = client.get(URL.format(source_id), query_string={"k": 3})
    again = client.get(URL.format(source_id), query_string={"k": "3"})
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert store.calls["neighbours"] == store.calls["articles"] == 1
    # Bounded LRU: two other queries push the first one out.
    client.get(URL.format(source_id), query_string={"k": 4})
    client.get(URL.format(source_id), query_string={"k": 5})
    client.get(URL.format(source_id), query_string={"k": 3})
    assert store.calls["neighbours"] == 4
    assert len(client.application.extensions["recs_related_cache"]) == 2


def test_clock_dependent_answers_are_not_cached(loaded: LoadedModel, source_id: str) -> None:
    store = CountingStore(loaded)
    client = create_app({"STORE": store}).test_client()
    for _ in range(2):
        client.get(URL.format(source_id), query_string={"max_age_days": 7})
    assert store.calls["neighbours"] == 2


def test_response_cache_can_be_turned_off(loaded: LoadedModel, source_id: str) -> None:
    store = CountingStore(loaded)
    client = create_app({"STORE": store, "RESPONSE_CACHE_SIZE": 0}).test_client()
    for _ in range(2):
        assert client.get(URL.format(source_id)).status_code == 200
    assert store.calls["neighbours"] == 2
