"""Property test: random rule sets, article flags and queries on the real sample model.

Whatever the rules, flags and query, no answer of /related or "for you" holds a hidden,
no_recommend, embargoed, expired or unpinned sponsored item, an excluded id or the box's own
article; a box keeps k items whenever k allowed candidates exist; allowed pins are shown, at
their positions when the box is full. The oracle below is written from the rules' meaning
(docs/editorial.md), not from the engine's code.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.artifact import LoadedModel
from models.flags import flag_timestamp
from models.records import Article, published_timestamp
from models.tagnorm import normalize_tag
from service.store.local import LocalStore
from tests.rules_fixtures import RulesStore, iso, rules_app
from tests.service_fixtures import NOW

NOW_S = NOW.timestamp()
SECTIONS = ["Earnings", "Deals", "Markets"]


@dataclasses.dataclass
class World:
    loaded: LoadedModel
    sources: list[str]
    pool: list[str]  # ids the rules and flags draw on: the sources' neighbours and the newest
    tags: list[str]
    store: RulesStore
    app: Flask


@pytest.fixture(scope="module")
def world(loaded: LoadedModel) -> World:
    sources = [a.id for a in loaded.articles[:400:40]]
    pool = list(
        dict.fromkeys(
            [n for s in sources for n, _ in loaded.model.neighbours(s)[:12]]
            + [
                a.id
                for a in sorted(loaded.articles, key=lambda a: published_timestamp(a.published_at))[
                    -15:
                ]
            ]
        )
    )
    tags = sorted({t for a in loaded.articles if a.id in set(pool) for t in a.tags})[:30]
    store = RulesStore(LocalStore(loaded))
    # No response cache: each example swaps the articles' flags under one version id.
    app = rules_app(store, RESPONSE_CACHE_SIZE=0)
    return World(loaded, sources, pool, tags, store, app)


def moment(draw: st.DrawFn) -> str | None:
    offset = draw(st.one_of(st.none(), st.integers(-7200, 7200)))
    return None if offset is None else iso(NOW + timedelta(seconds=offset))


@st.composite
def flags(draw: st.DrawFn, pool: list[str]) -> dict[str, dict[str, Any]]:
    chosen = draw(st.lists(st.sampled_from(pool), max_size=25, unique=True))
    out: dict[str, dict[str, Any]] = {}
    for article_id in chosen:
        out[article_id] = {
            "no_recommend": draw(st.booleans()),
            "sponsored": draw(st.booleans()),
            "embargo_until": moment(draw),
            "expires_at": moment(draw),
        }
    return out


@st.composite
def rule(draw: st.DrawFn, world: World) -> dict[str, Any]:
    ids = st.sampled_from([*world.pool, "no-such-article"])
    kind = draw(st.sampled_from(["site", "section", "article"]))
    body: dict[str, Any] = {"scope": {}}
    if kind == "section":
        body["scope"] = {"section": draw(st.sampled_from(SECTIONS)).lower()}
    elif kind == "article":
        body["scope"] = {"article_id": draw(st.sampled_from(world.sources))}
    if draw(st.booleans()):
        body["hide"] = draw(st.lists(ids, max_size=6))
    if draw(st.integers(0, 3)) == 0:
        body["hide_tags"] = draw(st.lists(st.sampled_from(world.tags), max_size=2))
    if draw(st.integers(0, 4)) == 0:
        body["hide_sections"] = [draw(st.sampled_from(SECTIONS)).upper()]
    if draw(st.booleans()):
        pins = st.fixed_dictionaries({"id": ids, "position": st.integers(0, 6)})
        body["pin"] = draw(st.lists(pins, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        body["max_age_days"] = draw(st.integers(1, 30))
    if draw(st.integers(0, 9)) == 0:
        body["hide_box"] = True
    for name in ("valid_from", "valid_until"):
        if draw(st.integers(0, 2)) == 0:
            body[name] = moment(draw)
    return {key: value for key, value in body.items() if value is not None}


@st.composite
def case(draw: st.DrawFn, world: World) -> dict[str, Any]:
    route = draw(st.sampled_from(["related", "foryou"]))
    return {
        "flags": draw(flags(world.pool)),
        "rules": {f"r{i}": r for i, r in enumerate(draw(st.lists(rule(world), max_size=6)))},
        "route": route,
        "source": draw(st.sampled_from(world.sources)),
        "k": draw(st.integers(1, 15)),
        "exclude": draw(st.lists(st.sampled_from(world.pool), max_size=4, unique=True)),
        "section": draw(st.one_of(st.none(), st.sampled_from(SECTIONS))),
    }


# ------------------------------------------------------------------------------- oracle
def active(body: dict[str, Any]) -> bool:
    start, end = flag_timestamp(body.get("valid_from")), flag_timestamp(body.get("valid_until"))
    return (start is None or NOW_S >= start) and (end is None or NOW_S < end)


def in_scope(body: dict[str, Any], article: str | None, sections: set[str]) -> bool:
    scope = body.get("scope") or {}
    if "article_id" in scope:
        return scope["article_id"] == article
    if "section" in scope:
        return scope["section"].casefold() in sections
    return True


def hidden(a: Article, rules: list[dict[str, Any]], blocked: set[str]) -> bool:
    """Hidden for every purpose, pins included."""
    if a.id in blocked or a.no_recommend:
        return True
    embargo, expires = flag_timestamp(a.embargo_until), flag_timestamp(a.expires_at)
    if (embargo is not None and NOW_S < embargo) or (expires is not None and NOW_S >= expires):
        return True
    tag_keys = {normalize_tag(t) for t in a.tags}
    for body in rules:
        if a.id in body.get("hide", ()):
            return True
        if {normalize_tag(t) for t in body.get("hide_tags", ())} & tag_keys:
            return True
        if a.section.casefold() in {s.casefold() for s in body.get("hide_sections", ())}:
            return True
    return False


def organic_ok(a: Article, rules: list[dict[str, Any]], blocked: set[str]) -> bool:
    if a.sponsored or hidden(a, rules, blocked):
        return False
    ages = [body["max_age_days"] for body in rules if "max_age_days" in body]
    if ages:
        if published_timestamp(a.published_at) < NOW_S - min(ages) * 86_400:
            return False
    return True


def pins_expected(
    rules: dict[str, dict[str, Any]], applied: list[str], by_id: dict[str, Article], blocked: set
) -> list[tuple[int, str]]:
    """Allowed pins in precedence order with the positions they ask for."""
    rank = {"article_id": 0, "section": 1}
    order = []
    for rule_id in applied:
        body = rules[rule_id]
        scope_rank = next((rank[key] for key in body.get("scope", {}) if key in rank), 2)
        for n, pin in enumerate(body.get("pin", ())):
            order.append((pin["position"], scope_rank, rule_id, n, pin["id"]))
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    in_force = [rules[r] for r in applied]
    for position, _, _, _, pin_id in sorted(order):
        article = by_id.get(pin_id)
        if pin_id in seen or article is None or hidden(article, in_force, blocked):
            continue
        seen.add(pin_id)
        out.append((position, pin_id))
    return out


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_forbidden_item_ever_and_boxes_stay_full(world: World, data: st.DataObject) -> None:
    c = data.draw(case(world))
    changes = c["flags"]
    articles = [
        dataclasses.replace(a, **changes[a.id]) if a.id in changes else a
        for a in world.loaded.articles
    ]
    by_id = {a.id: a for a in articles}
    world.store.inner = LocalStore(dataclasses.replace(world.loaded, articles=articles))
    world.store.set_rules(c["rules"])
    stored = world.store.ruleset.rules
    client = world.app.test_client()
    k, exclude, section = c["k"], set(c["exclude"]), c["section"]
    if c["route"] == "related":
        source = by_id[c["source"]]
        query: dict[str, Any] = {"k": k}
        if exclude:
            query["exclude"] = ",".join(sorted(exclude))
        response = client.get(f"/v1/articles/{source.id}/related", query_string=query)
        article_scope: str | None = source.id
        sections = {source.section.casefold()}
        blocked = exclude | {source.id}
        candidates = [n for n, _ in world.loaded.model.neighbours(source.id)]
    else:
        body: dict[str, Any] = {"history": [c["source"]], "k": k, "exclude": sorted(exclude)}
        if section:
            body["section"] = section
        response = client.post("/v1/recommendations", json=body)
        article_scope = None
        sections = {section.casefold()} if section else set()
        blocked = exclude | {c["source"]}
        candidates = [
            a.id for a in articles if section is None or a.section.casefold() == section.casefold()
        ]
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    items = answer["items"]
    got = [item["id"] for item in items]

    applied = sorted(
        rule_id
        for rule_id, body in stored.items()
        if active(body) and in_scope(body, article_scope, sections)
    )
    in_force = [stored[r] for r in applied]
    if any(body.get("hide_box") for body in in_force):
        assert got == [] and answer["reason"] == "hide_box"
        return
    assert "reason" not in answer
    assert len(got) == len(set(got)) <= k
    for item in items:
        article = by_id[item["id"]]
        pinned = item.get("source") == "pinned"
        assert not hidden(article, in_force, blocked), (item["id"], c)
        if not pinned:
            assert organic_ok(article, in_force, blocked), (item["id"], c)
        assert item.get("sponsored", False) is article.sponsored
        assert not article.sponsored or pinned

    pins = pins_expected(stored, applied, by_id, blocked)[:k]
    assert [i for i in got if i in {p for _, p in pins}] == sorted(
        (p for _, p in pins), key=got.index
    )
    assert {p for _, p in pins} <= set(got), (pins, got)
    allowed = [n for n in dict.fromkeys(candidates) if organic_ok(by_id[n], in_force, blocked)]
    available = len({*allowed, *(p for _, p in pins)})
    if available >= k:
        assert len(got) == k, (len(got), available, c)
    if len(got) == k and all(position < k for position, _ in pins):
        target = -1
        for position, pin_id in pins:
            target = max(position, target + 1)
            assert got[target] == pin_id, (got, pins)
