"""``/v1/recommendations``: ranking, explanations, fallbacks and bad input, on real Redis too."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from models.ranking.config import RankingConfig
from models.ranking.recommend import recommend
from models.records import published_timestamp
from service import tokens
from service.openapi import spec_bytes
from service.redis import keys
from service.store.local import LocalStore, store_source
from tests.service_fixtures import NOW, embedded_app, redis_app

URL = "/v1/recommendations"


SIGNING_KEY = "test-signing-key-0123456789abcdef"


@pytest.fixture
def remote(published: str) -> FlaskClient:
    return redis_app(
        published,
        TRENDING_CACHE_SECONDS=0,
        USER_SIGNING_KEY=SIGNING_KEY,
        EVENTS_RATE_LIMIT="off",
    ).test_client()


def view(client: FlaskClient, article_id: str, readers: int = 1) -> None:
    """``readers`` anonymous readers (each its own address) read ``article_id``."""
    for n in range(readers):
        response = client.post(
            "/v1/events",
            json={"article_id": article_id},
            environ_base={"REMOTE_ADDR": f"10.7.{n}.1"},
        )
        assert response.status_code == 202


def reader_token(user_id: str) -> str:
    return tokens.sign(SIGNING_KEY, user_id, 2_000_000_000)


@pytest.fixture(scope="module")
def history(loaded: LoadedModel) -> list[str]:
    """Five Earnings stories, most recent read first."""
    return [a.id for a in loaded.articles if a.section == "Earnings"][:5]


def validate(body: Any, name: str = "RecommendationsResponse") -> None:
    spec = json.loads(spec_bytes())
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


def check_box(body: dict[str, Any], k: int, read: list[str] = ()) -> None:  # type: ignore[assignment]
    """Every answer: valid, k items, no repeats, nothing already read."""
    validate(body)
    got = ids(body)
    assert len(got) == k
    assert len(set(got)) == k
    assert not set(got) & set(read)


def both(app: Flask, remote: FlaskClient) -> list[FlaskClient]:
    return [app.test_client(), remote]


# ------------------------------------------------------------------------------- ranking
def test_history_in_recommendations_out(
    app: Flask, remote: FlaskClient, history: list[str], loaded: LoadedModel
) -> None:
    for client in both(app, remote):
        query = {"history": ",".join([*history, "not-in-model"]), "k": 6}
        body = client.get(URL, query_string=query).get_json()
        check_box(body, 6, history)
        assert body["model_version"] == loaded.version
        assert body["ignored"] == ["not-in-model"]
        for item in body["items"]:
            assert item["source"] == "history"
            assert item["because"] and set(item["because"]) <= set(history)
            assert item["score"] > 0
            article = loaded.articles[loaded.model.index_[item["id"]]]
            assert set(item["shared_tags"]) <= set(article.tags) | {
                t.casefold() for t in article.tags
            }


def test_embedded_mode_runs_the_pure_ranking(
    app: Flask, history: list[str], loaded: LoadedModel
) -> None:
    store = LocalStore(loaded)
    expected = recommend(
        store_source(store, loaded.version), history, k=10, now=NOW, config=RankingConfig()
    )
    body = app.test_client().get(URL, query_string={"history": history, "k": 10}).get_json()
    assert ids(body) == [item.meta.id for item in expected.items]
    assert [i["because"] for i in body["items"]] == [list(x.because) for x in expected.items]


def test_redis_and_embedded_agree(app: Flask, remote: FlaskClient, history: list[str]) -> None:
    query = {"history": ",".join(history), "k": 10}
    local = app.test_client().get(URL, query_string=query).get_json()
    stored = remote.get(URL, query_string=query).get_json()
    # Redis keeps scores to 1/65535: equal up to that rounding.
    assert ids(local) == ids(stored)
    for a, b in zip(local["items"], stored["items"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)
        assert a["because"] == b["because"]
        assert a["shared_tags"] == b["shared_tags"]


def test_post_and_get_give_the_same_answer(remote: FlaskClient, history: list[str]) -> None:
    got = remote.get(URL, query_string={"history": history, "k": 4, "exclude": history[0]})
    posted = remote.post(URL, json={"history": history, "k": 4, "exclude": [history[0]]})
    assert got.status_code == posted.status_code == 200
    assert got.get_json() == posted.get_json()
    assert got.headers["Cache-Control"] == "no-store"


def test_exclude_and_section(
    app: Flask, remote: FlaskClient, history: list[str], loaded: LoadedModel
) -> None:
    for client in both(app, remote):
        first = ids(client.post(URL, json={"history": history, "k": 6}).get_json())
        body = client.post(URL, json={"history": history, "k": 6, "exclude": first[:3]}).get_json()
        check_box(body, 6, history + first[:3])
        body = client.post(URL, json={"history": history, "k": 8, "section": "deals"}).get_json()
        check_box(body, 8, history)
        assert {item["section"] for item in body["items"]} == {"Deals"}


def test_only_unknown_history_falls_back(app: Flask) -> None:
    body = app.test_client().post(URL, json={"history": ["x1", "x2"], "k": 3}).get_json()
    check_box(body, 3)
    assert body["ignored"] == ["x1", "x2"]
    assert {item["source"] for item in body["items"]} == {"latest"}


# ------------------------------------------------------------------------------- fallbacks
def test_cold_start_is_latest(app: Flask, remote: FlaskClient, loaded: LoadedModel) -> None:
    def stamps(body: dict[str, Any]) -> list[str]:
        return [str(loaded.articles[loaded.model.index_[i]].published_at) for i in ids(body)]

    newest = max(str(a.published_at) for a in loaded.articles)
    for client in both(app, remote):
        body = client.get(URL, query_string={"k": 5}).get_json()
        check_box(body, 5)
        assert {item["source"] for item in body["items"]} == {"latest"}
        assert stamps(body) == sorted(stamps(body), reverse=True)
        assert stamps(body)[0] == newest
        section = client.get(URL, query_string={"k": 5, "section": "markets"}).get_json()
        check_box(section, 5)
        assert {item["section"] for item in section["items"]} == {"Markets"}
        assert stamps(section) == sorted(stamps(section), reverse=True)


def test_publish_writes_latest_sorted_sets(
    published: str, redis_client: redis.Redis, loaded: LoadedModel
) -> None:
    everything: Any = redis_client.zrevrange(
        keys.latest_key(loaded.version), 0, -1, withscores=True
    )
    assert len(everything) == len(loaded.articles)
    times = [score for _, score in everything]
    assert times == sorted(times, reverse=True)
    assert times[0] == max(published_timestamp(a.published_at) for a in loaded.articles)
    deals: Any = redis_client.zrange(keys.latest_section_key(loaded.version, "Deals"), 0, -1)
    assert {m.decode() for m in deals} == {a.id for a in loaded.articles if a.section == "Deals"}


def test_trending_comes_before_latest(
    remote: FlaskClient, loaded: LoadedModel, history: list[str]
) -> None:
    hot = [a.id for a in loaded.articles[100:103]]
    for article_id, count in zip(hot, (1, 3, 2), strict=True):
        view(remote, article_id, count)
    body = remote.get(URL, query_string={"k": 5}).get_json()
    check_box(body, 5)
    assert ids(body)[:3] == [hot[1], hot[2], hot[0]]
    assert [i["source"] for i in body["items"]] == ["trending"] * 3 + ["latest"] * 2
    # A trending article already read is skipped.
    body = remote.post(URL, json={"history": [hot[1]], "k": 50}).get_json()
    assert hot[1] not in ids(body)


def test_trending_window_and_decay(published: str, loaded: LoadedModel) -> None:
    from datetime import timedelta

    def app_at(moment: datetime) -> FlaskClient:
        return redis_app(published, TRENDING_CACHE_SECONDS=0, CLOCK=lambda: moment).test_client()

    old, recent, newer = (a.id for a in loaded.articles[200:203])
    then = app_at(NOW - timedelta(hours=30))  # outside the 24-hour window by "now"
    view(then, old, 5)
    earlier = app_at(NOW - timedelta(hours=6))  # one half-life ago: 3 readers weigh 1.5
    view(earlier, recent, 3)
    now = app_at(NOW)
    view(now, newer, 2)
    body = now.get(URL, query_string={"k": 3}).get_json()
    assert ids(body)[:2] == [newer, recent]
    assert old not in ids(body)


def test_always_k_and_never_a_repeat(
    app: Flask, remote: FlaskClient, history: list[str], loaded: LoadedModel
) -> None:
    remote.post("/v1/events", json={"article_id": loaded.articles[7].id})
    for client in both(app, remote):
        for query in (
            {"history": history[:1], "k": 50},
            {"history": history, "k": 50, "section": "Markets"},
            {"history": history, "k": 50, "exclude": history},
        ):
            body = client.post(URL, json=query).get_json()
            check_box(body, 50, query["history"])  # type: ignore[arg-type]
            # Ranked items first (history, or trending through the popularity prior, with a
            # score), then the fallbacks (score 0): trending, then latest.
            ranked = [item for item in body["items"] if item["score"] > 0]
            assert body["items"][: len(ranked)] == ranked
            assert {item["source"] for item in ranked} <= {"history", "trending"}
            sources = [item["source"] for item in body["items"][len(ranked) :]]
            order = {"trending": 1, "latest": 2}
            assert sources == sorted(sources, key=order.__getitem__)


def test_stored_history_is_used_for_a_user(
    remote: FlaskClient, history: list[str], app: Flask
) -> None:
    token = reader_token("u-1")
    for article_id in reversed(history):  # the last event is the most recent read
        response = remote.post("/v1/events", json={"user_token": token, "article_id": article_id})
        assert response.status_code == 202
    stored = remote.post(URL, json={"user_token": token, "k": 6}).get_json()
    given = remote.post(URL, json={"history": history, "k": 6}).get_json()
    assert ids(stored) == ids(given)
    # An explicit history wins over the stored one.
    other = remote.post(URL, json={"user_token": token, "history": [], "k": 6}).get_json()
    assert {item["source"] for item in other["items"]} <= {"trending", "latest"}
    # Embedded mode has no stored history: a signed reader alone gets the cold-start box.
    keyed = embedded_app(Path(app.config["MODEL_DIR"]), USER_SIGNING_KEY=SIGNING_KEY)
    cold = keyed.test_client().post(URL, json={"user_token": token, "k": 3}).get_json()
    check_box(cold, 3)


def test_long_history_is_truncated_not_refused(app: Flask, loaded: LoadedModel) -> None:
    long = [a.id for a in loaded.articles[:120]]
    response = app.test_client().post(URL, json={"history": long, "k": 6})
    assert response.status_code == 200
    body = response.get_json()
    assert not set(ids(body)) & set(long[:50])
    for item in body["items"]:
        assert set(item["because"]) <= set(long[:50])


def test_nothing_published_is_503(redis_url: str) -> None:
    response = redis_app(redis_url).test_client().get(URL, query_string={"history": "a"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("body", "parameter", "message"),
    [
        ({"history": "a,b"}, "history", "must be a list"),
        ({"history": ["ok", 3]}, "history[1]", "must be a string"),
        ({"history": ["ok", "bad id!"]}, "history[1]", "not a valid article id"),
        ({"k": 100000}, "k", "from 1 to 50"),
        ({"k": 0}, "k", "from 1 to 50"),
        ({"k": True}, "k", "from 1 to 50"),
        ({"exclude": ["x"] * 101}, "exclude", "at most 100"),
        ({"exclude": "x"}, "exclude", "must be a list"),
        ({"section": 5}, "section", "must be a string"),
        ({"section": "s" * 201}, "section", "at most 200"),
        ({"histroy": []}, "histroy", "unknown field"),
        ([1, 2], "body", "must be a JSON object"),
    ],
)
def test_bad_post_bodies_are_400(app: Flask, body: Any, parameter: str, message: str) -> None:
    response = app.test_client().post(URL, json=body)
    assert response.status_code == 400
    error = response.get_json()
    assert error["parameter"] == parameter
    assert message in error["message"]
    validate(error, "Error")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"history": "ok,bad id"}, "history"),
        ({"k": "999999999"}, "k"),
        ({"k": "²"}, "k"),
        ({"exclude": "a/b"}, "exclude"),
        ({"user_id": "x" * 129}, "user_id"),
        ({"user_token": "x.1.y"}, "user_token"),
    ],
)
def test_bad_queries_are_400(app: Flask, query: dict[str, str], parameter: str) -> None:
    response = app.test_client().get(URL, query_string=query)
    assert response.status_code == 400
    assert response.get_json()["parameter"] == parameter


def test_oversized_and_malformed_bodies(app: Flask) -> None:
    client = app.test_client()
    big = json.dumps({"history": ["a" * 100] * 200})
    response = client.post(URL, data=big, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["parameter"] == "body"
    assert "at most 16384" in response.get_json()["message"]
    response = client.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("body: invalid JSON (")
    # text/plain needs no CORS preflight, so any page could post it: refused.
    response = client.post(URL, data=json.dumps({"k": 2}), content_type="text/plain")
    assert response.status_code == 415
    small = embedded_app(Path(app.config["MODEL_DIR"]), MAX_BODY_BYTES=300).test_client()
    assert small.post(URL, json={"history": ["a" * 100] * 5}).status_code == 413


# ------------------------------------------------------------------------------- popularity prior
HAND = "20261128T000000Z-hand"
# Scores that are multiples of 0.2 survive the uint16 storage exactly (65535 = 5 x 13107).
HAND_LISTS = {"h": [("a", 0.8), ("b", 0.6), ("c", 0.2)]}
HAND_IDS = ["h", "a", "b", "c", "p", "q", "z"]


def write_hand_version(
    client: redis.Redis,
    lists: dict[str, list[tuple[str, float]]],
    sections: dict[str, str] | None = None,
) -> None:
    """A version written key by key: ``lists`` as the neighbour lists, every article dated, in
    section "news" unless ``sections`` says otherwise."""
    rows = {article_id: row for row, article_id in enumerate(HAND_IDS)}
    client.hset(keys.index_key(HAND), mapping=rows)  # type: ignore[arg-type]
    for article_id, row in rows.items():
        found = lists.get(article_id, [])
        client.set(
            keys.neighbours_key(HAND, row),
            keys.encode_neighbours(
                np.array([rows[n] for n, _ in found], dtype=np.int32),
                np.array([s for _, s in found], dtype=np.float64),
            ),
        )
        published = f"1987-03-{10 + row:02d}T00:00:00Z"
        client.set(
            keys.meta_key(HAND, row),
            keys.encode_meta(
                article_id,
                f"t {article_id}",
                "",
                (sections or {}).get(article_id, "news"),
                published,
                "",
                [],
                [],
            ),
        )
        client.zadd(keys.latest_key(HAND), {article_id: published_timestamp(published)})
    client.hset(
        keys.info_key(HAND),
        mapping={"version": HAND, "built_at": "1987-03-20T00:00:00Z", "articles": 7, "k": 3},
    )
    client.set(keys.CURRENT, HAND)


def hand_app(url: str, **config: Any) -> FlaskClient:
    settings = {
        "TRENDING_CACHE_SECONDS": 0,
        "VERSION_TTL": 0,
        "FRESHNESS_HALF_LIFE_HOURS": 0,
        "DIVERSITY": 0,
    }
    settings.update(config)
    return redis_app(url, **settings).test_client()


def test_popularity_prior_from_trending_hand_computed(
    redis_url: str, redis_client: redis.Redis
) -> None:
    write_hand_version(redis_client, HAND_LISTS)
    client = hand_app(redis_url, POPULARITY_WEIGHT=0.5)
    for article_id, count in (("p", 4), ("q", 2), ("a", 1)):
        view(client, article_id, count)
    # Trending counts p 4, q 2, a 1 readers (all this hour), over the top count: 1, 0.5, 0.25.
    # a = 0.8 + 0.5 * 0.25 = 0.925, b = 0.6, p = 0.5, q = 0.25, c = 0.2; then latest (z, newest).
    body = client.get(URL, query_string={"history": "h", "k": 6}).get_json()
    validate(body)
    assert ids(body) == ["a", "b", "p", "q", "c", "z"]
    assert [item["score"] for item in body["items"]] == [0.925, 0.6, 0.5, 0.25, 0.2, 0.0]
    assert [item["source"] for item in body["items"]] == [
        "history",
        "history",
        "trending",
        "trending",
        "history",
        "latest",
    ]
    assert [item["because"] for item in body["items"]] == [["h"], ["h"], [], [], ["h"], []]
    # Weight 0: the personal ranking alone; trending only fills, in trending order, score 0.
    off = hand_app(redis_url, POPULARITY_WEIGHT=0).get(URL, query_string={"history": "h", "k": 6})
    assert ids(off.get_json()) == ["a", "b", "c", "p", "q", "z"]
    assert [i["score"] for i in off.get_json()["items"]] == [0.8, 0.6, 0.2, 0.0, 0.0, 0.0]
    # A reader with no known history gets the fallbacks only, as before: no prior ranking.
    cold = client.get(URL, query_string={"history": "nobody", "k": 3}).get_json()
    assert ids(cold) == ["p", "q", "a"]
    assert {item["score"] for item in cold["items"]} == {0.0}


def test_section_affinity_prior_from_trending_hand_computed(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # h, a, q are sport (q spelt "Sport"), the rest news: the reader of h has a sport share of 1.
    sections = {"h": "sport", "a": "sport", "q": "Sport"}
    write_hand_version(redis_client, HAND_LISTS, sections)
    client = hand_app(redis_url, POPULARITY_WEIGHT=0.5, SECTION_AFFINITY=3)
    for article_id, count in (("p", 4), ("q", 2), ("a", 1)):
        view(client, article_id, count)
    # Prior = 0.5 x count / 4 x (1 + 3 x share of its section): p (news) 0.5 x 1 = 0.5,
    # q (sport) 0.5 x 0.5 x 4 = 1.0, a (sport) 0.8 + 0.5 x 0.25 x 4 = 1.3; b 0.6, c 0.2 as they
    # were; then latest (z). Without the affinity: a, b, p, q, c (test above).
    query = {"history": "h", "k": 6}
    body = client.get(URL, query_string=query).get_json()
    validate(body)
    assert ids(body) == ["a", "q", "b", "p", "c", "z"]
    assert [item["score"] for item in body["items"]] == [1.3, 1.0, 0.6, 0.5, 0.2, 0.0]
    assert [item["source"] for item in body["items"]] == [
        "history",
        "trending",
        "history",
        "trending",
        "history",
        "latest",
    ]
    # Answered again from the warm row cache, and without any cache: the same box.
    assert client.get(URL, query_string=query).get_json() == body
    uncached = hand_app(redis_url, POPULARITY_WEIGHT=0.5, SECTION_AFFINITY=3, ROW_CACHE_SIZE=0)
    assert uncached.get(URL, query_string=query).get_json() == body
    # No known history: no shares and no prior, the fallbacks in trending order as before.
    cold = client.get(URL, query_string={"history": "nobody", "k": 3}).get_json()
    assert ids(cold) == ["p", "q", "a"]


def test_row_cache_is_dropped_when_the_seq_moves(redis_url: str, redis_client: redis.Redis) -> None:
    write_hand_version(redis_client, HAND_LISTS)
    client = hand_app(redis_url)
    query = {"history": "h", "k": 3}
    assert ids(client.get(URL, query_string=query).get_json()) == ["a", "b", "c"]
    # Rewrite h's list in place, as an incremental update does, before its seq is bumped: the
    # process still ranks with the list it read (cached for this version and seq) ...
    changed = {"h": [("c", 1.0), ("b", 0.6), ("a", 0.2)]}
    write_hand_version(redis_client, changed)
    assert ids(client.get(URL, query_string=query).get_json()) == ["a", "b", "c"]
    # ... and reads it again once the update's seq is seen.
    redis_client.hincrby(keys.info_key(HAND), "seq", 1)
    assert ids(client.get(URL, query_string=query).get_json()) == ["c", "b", "a"]
    # Without the cache every request reads Redis.
    assert ids(hand_app(redis_url, ROW_CACHE_SIZE=0).get(URL, query_string=query).get_json()) == [
        "c",
        "b",
        "a",
    ]


def test_row_cache_size_never_changes_an_answer(published: str, loaded: LoadedModel) -> None:
    rng = random.Random(3)
    articles = [a.id for a in loaded.articles]
    queries = [
        {"history": rng.sample(articles, n), "k": k}
        for n, k in ((1, 6), (5, 10), (20, 6), (50, 50), (3, 6))
    ]
    answers = {}
    for size in (0, 1, 50, 32_768):
        client = redis_app(published, ROW_CACHE_SIZE=size, TRENDING_CACHE_SECONDS=0).test_client()
        # Twice: the second pass reads through whatever the first left cached.
        answers[size] = [client.post(URL, json=q).get_json() for q in queries * 2]
    assert answers[1] == answers[0] and answers[50] == answers[0] and answers[32_768] == answers[0]
    assert answers[0][: len(queries)] == answers[0][len(queries) :]
