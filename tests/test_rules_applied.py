"""Editorial rules and article flags on every route, on both stores (a real redis-server for
Redis): each rule field and flag, windows with an injected clock, pins, conflicts, ETags."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jsonschema
import pytest
import redis
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from models.records import Article, published_timestamp
from service.openapi import spec_bytes
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.store.local import LocalStore
from tests.rules_fixtures import Clock, RulesStore, iso, rules_app
from tests.service_fixtures import NOW

RELATED = "/v1/articles/{}/related"
FOR_YOU = "/v1/recommendations"
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The session model with flags on some articles, and who is who in it."""

    loaded: LoadedModel
    source: str  # an article with a full neighbour list
    neighbours: list[str]  # its stored neighbours, best first
    flagged: dict[str, str]  # id -> why it must never be recommended
    shown: list[str]  # flagged articles that must still be shown (flags over or not yet)
    newest: list[str]  # the newest articles, the first of "latest"


@pytest.fixture(scope="module")
def corpus(loaded: LoadedModel) -> Corpus:
    source = next(a.id for a in loaded.articles if len(loaded.model.neighbours(a.id)) == 30)
    neighbours = [n for n, _ in loaded.model.neighbours(source)]
    by_newest = sorted(
        loaded.articles, key=lambda a: (published_timestamp(a.published_at), a.id), reverse=True
    )
    newest = [a.id for a in by_newest[:6]]
    changes: dict[str, dict[str, Any]] = {
        neighbours[0]: {"no_recommend": True},
        neighbours[1]: {"sponsored": True},
        neighbours[2]: {"embargo_until": iso(LATER)},
        neighbours[3]: {"expires_at": iso(EARLIER)},
        neighbours[4]: {"embargo_until": iso(EARLIER)},  # over: shown
        neighbours[5]: {"expires_at": iso(LATER)},  # not yet: shown
        newest[0]: {"no_recommend": True},
        newest[1]: {"sponsored": True},
        newest[2]: {"embargo_until": iso(LATER)},
    }
    articles: list[Article] = [
        dataclasses.replace(a, **changes[a.id]) if a.id in changes else a for a in loaded.articles
    ]
    flagged = {
        neighbours[0]: "no_recommend",
        neighbours[1]: "sponsored",
        neighbours[2]: "embargoed",
        neighbours[3]: "expired",
        newest[0]: "no_recommend",
        newest[1]: "sponsored",
        newest[2]: "embargoed",
    }
    return Corpus(
        loaded=dataclasses.replace(loaded, articles=articles),
        source=source,
        neighbours=neighbours,
        flagged=flagged,
        shown=[neighbours[4], neighbours[5]],
        newest=newest,
    )


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest, corpus: Corpus) -> Iterator[RulesStore]:
    if request.param == "local":
        yield RulesStore(LocalStore(corpus.loaded))
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    publish(client, corpus.loaded)
    client.close()
    inner = RedisStore(url)
    yield RulesStore(inner)
    inner.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(store: RulesStore, clock: Clock) -> FlaskClient:
    return rules_app(store, clock).test_client()


def validate(body: Any, name: str) -> None:
    """Every answer here, pins, labels and reasons included, is one the spec describes."""
    spec = json.loads(spec_bytes())
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def related(client: FlaskClient, article_id: str, **query: Any) -> dict[str, Any]:
    response = client.get(RELATED.format(article_id), query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    validate(body, "RelatedResponse")
    return body


def for_you(client: FlaskClient, **body: Any) -> dict[str, Any]:
    response = client.post(FOR_YOU, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer: dict[str, Any] = response.get_json()
    validate(answer, "RecommendationsResponse")
    return answer


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


def organic(corpus: Corpus, hidden: set[str] = frozenset(), k: int = 6) -> list[str]:  # type: ignore[assignment]
    """Oracle: the source's neighbours without flagged or hidden ones, first k."""
    return [n for n in corpus.neighbours if n not in corpus.flagged and n not in hidden][:k]


# ------------------------------------------------------------------------------- flags
def test_flagged_articles_are_never_related_and_the_box_stays_full(
    client: FlaskClient, corpus: Corpus
) -> None:
    body = related(client, corpus.source, k=8)
    assert ids(body) == organic(corpus, k=8)
    assert set(corpus.shown) <= set(ids(body))
    assert not any("sponsored" in item or "source" in item for item in body["items"])


def test_a_flagged_article_still_gets_its_own_box(client: FlaskClient, corpus: Corpus) -> None:
    for article_id in list(corpus.flagged)[:4]:
        body = related(client, article_id, k=5)
        assert len(ids(body)) == 5 and not set(ids(body)) & set(corpus.flagged)


def test_flags_hold_in_for_you_trending_and_latest(client: FlaskClient, corpus: Corpus) -> None:
    # Ranked from a history whose lists hold the flagged neighbours.
    body = for_you(client, history=[corpus.source], k=10)
    assert len(ids(body)) == 10 and not set(ids(body)) & set(corpus.flagged)
    # Cold start: latest, whose newest three are flagged.
    cold = for_you(client, k=5)
    assert ids(cold) == [i for i in corpus.newest if i not in corpus.flagged][:3] + ids(cold)[3:]
    assert not set(ids(cold)) & set(corpus.flagged) and len(ids(cold)) == 5
    # Trending: the flagged ones are the most read, and still never shown.
    for article_id in corpus.flagged:
        for n in range(3):
            response = client.post(
                "/v1/events",
                json={"article_id": article_id},
                environ_base={"REMOTE_ADDR": f"10.9.{n}.1"},
            )
            assert response.status_code == 202
    trending = for_you(client, k=5)
    assert not set(ids(trending)) & set(corpus.flagged) and len(ids(trending)) == 5


def test_embargo_lifts_and_expiry_bites_on_the_clock(
    client: FlaskClient, clock: Clock, corpus: Corpus
) -> None:
    embargoed, expiring = corpus.neighbours[2], corpus.neighbours[5]
    before = related(client, corpus.source, k=10)
    assert embargoed not in ids(before) and expiring in ids(before)
    clock.now = LATER  # the embargo ends and the expiry comes at this very second
    after = related(client, corpus.source, k=10)
    assert embargoed in ids(after) and expiring not in ids(after)


# ------------------------------------------------------------------------------- rules
def test_hide_fields_on_related_and_for_you(
    client: FlaskClient, store: RulesStore, corpus: Corpus
) -> None:
    loaded = corpus.loaded
    by_id = {a.id: a for a in loaded.articles}
    first = organic(corpus, k=3)
    tagged = next(by_id[n] for n in organic(corpus, k=30) if by_id[n].tags)
    sectioned = by_id[first[2]]
    store.set_rules(
        {
            "ids": {"hide": [first[0]]},
            "tags": {"hide_tags": [tagged.tags[0].upper()]},
            "sections": {"hide_sections": [sectioned.section.upper()]},
        }
    )

    def allowed(article_id: str) -> bool:
        article = by_id[article_id]
        return (
            article_id != first[0]
            and article.section != sectioned.section
            and tagged.tags[0] not in article.tags
        )

    body = related(client, corpus.source, k=8)
    # Filled from further neighbours as far as the stored list has allowed ones.
    assert ids(body) == [n for n in organic(corpus, k=30) if allowed(n)][:8]
    assert ids(body)
    answer = for_you(client, history=[corpus.source], k=8)
    assert len(ids(answer)) == 8 and first[0] not in ids(answer)
    assert all(by_id[i].section != sectioned.section for i in ids(answer))


def test_pins_on_related_beyond_unknown_and_hidden(
    client: FlaskClient, store: RulesStore, corpus: Corpus
) -> None:
    far = corpus.neighbours[-1]
    sponsored = corpus.neighbours[1]
    store.set_rules(
        {
            "lead": {
                "scope": {"article_id": corpus.source},
                "pin": [
                    {"id": far, "position": 0},
                    {"id": "no-such-article", "position": 1},
                    {"id": corpus.neighbours[0], "position": 1},  # no_recommend: hidden
                    {"id": sponsored, "position": 2},
                    {"id": corpus.newest[3], "position": 99},
                ],
            }
        }
    )
    body = related(client, corpus.source, k=6)
    got = ids(body)
    assert got[0] == far and got[2] == sponsored and got[-1] == corpus.newest[3]
    assert len(got) == 6 and "no-such-article" not in got and corpus.neighbours[0] not in got
    items = {item["id"]: item for item in body["items"]}
    assert items[far]["source"] == "pinned" and "sponsored" not in items[far]
    assert items[sponsored]["sponsored"] is True and items[sponsored]["source"] == "pinned"
    assert "source" not in items[got[1]]
    # Other articles' boxes: not in scope.
    other = related(client, corpus.neighbours[10], k=6)
    assert not any(item.get("source") == "pinned" for item in other["items"])


def test_hide_beats_pin_and_exclude_beats_pin(
    client: FlaskClient, store: RulesStore, corpus: Corpus
) -> None:
    pinned = corpus.neighbours[20]
    store.set_rules({"pin": {"pin": [{"id": pinned, "position": 0}]}, "hide": {"hide": [pinned]}})
    assert pinned not in ids(related(client, corpus.source, k=6))
    assert pinned not in ids(for_you(client, history=[corpus.source], k=6))
    store.set_rules({"pin": {"pin": [{"id": pinned, "position": 0}]}})
    assert ids(related(client, corpus.source, k=6))[0] == pinned
    assert ids(for_you(client, history=[corpus.source], k=6))[0] == pinned
    assert pinned not in ids(related(client, corpus.source, k=6, exclude=pinned))
    assert pinned not in ids(for_you(client, history=[corpus.source], k=6, exclude=[pinned]))
    # The box's own article is never pinned into it.
    assert pinned not in ids(related(client, pinned, k=6))


def test_pins_and_hide_box_in_for_you(
    client: FlaskClient, store: RulesStore, corpus: Corpus
) -> None:
    section = corpus.loaded.articles[0].section
    store.set_rules(
        {
            "lead": {"pin": [{"id": corpus.neighbours[1], "position": 1}]},
            "quiet": {"scope": {"section": section.lower()}, "hide_box": True},
        }
    )
    body = for_you(client, history=[corpus.source], k=5)
    assert ids(body)[1] == corpus.neighbours[1]
    assert body["items"][1]["source"] == "pinned" and body["items"][1]["sponsored"] is True
    quiet = for_you(client, history=[corpus.source], k=5, section=section)
    assert quiet["items"] == [] and quiet["reason"] == "hide_box"


def test_hide_box_on_related(client: FlaskClient, store: RulesStore, corpus: Corpus) -> None:
    store.set_rules({"off": {"scope": {"article_id": corpus.source}, "hide_box": True}})
    body = related(client, corpus.source)
    assert body["items"] == [] and body["reason"] == "hide_box"
    assert related(client, corpus.neighbours[7])["items"]


def test_max_age_days_strictest_wins(
    client: FlaskClient, store: RulesStore, corpus: Corpus
) -> None:
    by_id = {a.id: a for a in corpus.loaded.articles}
    store.set_rules({"month": {"max_age_days": 30}, "week": {"max_age_days": 7}})
    body = related(client, corpus.source, k=50)
    cutoff = (NOW - timedelta(days=7)).timestamp()
    assert ids(body)
    assert all(published_timestamp(by_id[i].published_at) >= cutoff for i in ids(body))
    assert ids(body) == [
        n for n in organic(corpus, k=50) if published_timestamp(by_id[n].published_at) >= cutoff
    ]


def test_max_age_days_and_hide_tags_in_for_you(
    client: FlaskClient, store: RulesStore, corpus: Corpus
) -> None:
    by_id = {a.id: a for a in corpus.loaded.articles}
    tag = next(t for a in corpus.loaded.articles[:50] for t in a.tags)
    store.set_rules({"week": {"max_age_days": 7}, "tags": {"hide_tags": [tag]}})
    cutoff = (NOW - timedelta(days=7)).timestamp()
    for body in (for_you(client, history=[corpus.source], k=8), for_you(client, k=8)):
        assert len(ids(body)) == 8
        for item in ids(body):
            assert published_timestamp(by_id[item].published_at) >= cutoff
            assert tag not in by_id[item].tags


def test_validity_window_with_the_clock_and_the_response_cache(
    client: FlaskClient, store: RulesStore, clock: Clock, corpus: Corpus
) -> None:
    victim = organic(corpus, k=1)[0]
    start = NOW + timedelta(seconds=10)
    store.set_rules(
        {"soon": {"hide": [victim], "valid_from": iso(start), "valid_until": iso(LATER)}}
    )
    assert ids(related(client, corpus.source))[0] == victim  # cached now, until the window
    clock.now = start - timedelta(seconds=1)
    assert ids(related(client, corpus.source))[0] == victim
    clock.now = start
    assert victim not in ids(related(client, corpus.source))
    clock.now = LATER  # the window is over (and an embargo of the corpus too)
    assert victim in ids(related(client, corpus.source))


def test_etag_changes_with_the_rules(client: FlaskClient, store: RulesStore, corpus: Corpus):
    url = RELATED.format(corpus.source)
    first = client.get(url)
    etag = first.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    store.set_rules({"hide": {"hide": [ids(first.get_json())[0]]}})
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert ids(changed.get_json()) != ids(first.get_json())
    # A rule that changes nothing here still changes the tag (the seq is part of it).
    store.set_rules({"hide": {"hide": [ids(first.get_json())[0]]}, "x": {"hide": ["zzz"]}})
    again = client.get(url, headers={"If-None-Match": changed.headers["ETag"]})
    assert again.status_code == 200 and ids(again.get_json()) == ids(changed.get_json())


def test_for_you_exclude_limits(client: FlaskClient) -> None:
    too_many = [f"a{i}" for i in range(101)]
    response = client.post(FOR_YOU, json={"exclude": too_many})
    assert response.status_code == 400 and response.get_json()["parameter"] == "exclude"
    response = client.get(FOR_YOU, query_string={"exclude": ",".join(too_many)})
    assert response.status_code == 400 and response.get_json()["parameter"] == "exclude"
