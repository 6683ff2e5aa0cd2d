"""The rules engine on hand-built rule sets and articles: precedence, pins, windows, caching."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from service.rules.compiled import RulesCompiler, compile_rules
from service.rules.engine import HIDE_BOX_REASON, Arranged, arrange, box_for, pin_ids
from service.store.base import ArticleMeta, RuleSet

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86_400


def meta(article_id: str, **fields: Any) -> ArticleMeta:
    base: dict[str, Any] = {
        "title": article_id,
        "url": "",
        "section": "World",
        "published_at": "2027-01-15T00:00:00Z",
        "image_url": "",
        "tags": (),
        "tag_keys": (),
    }
    base.update(fields)
    return ArticleMeta(article_id, **base)


CANDIDATES = [meta(f"c{i}") for i in range(20)]
EXTRA = {
    "p1": meta("p1"),
    "p2": meta("p2"),
    "spon": meta("spon", sponsored=True),
    "gone": meta("gone", no_recommend=True),
}


def run(
    rules: Mapping[str, Mapping[str, Any]],
    *,
    k: int = 5,
    candidates: list[ArticleMeta] = CANDIDATES,
    now: float = NOW,
    article_id: str | None = "src",
    sections: tuple[str | None, ...] = ("World",),
    blocked: tuple[str, ...] = ("src",),
) -> Arranged[float]:
    compiled = compile_rules(RuleSet(1, rules))
    box = box_for(compiled, now=now, article_id=article_id, sections=sections, blocked=blocked)
    known = {m.id: m for m in [*candidates, *EXTRA.values()]}
    pins = {i: known.get(i) for i in pin_ids(box)}
    return arrange(box, [(m, 1.0) for m in candidates], k, pins)


def ids(arranged: Arranged[float]) -> list[str]:
    return [p.meta.id for p in arranged.items]


def test_no_rules_keeps_the_first_k() -> None:
    assert ids(run({})) == ["c0", "c1", "c2", "c3", "c4"]


def test_flags_drop_items_and_the_next_ones_fill() -> None:
    flagged = [
        meta("n", no_recommend=True),
        meta("s", sponsored=True),
        meta("e", embargo_until=NOW + 1),
        meta("x", expires_at=NOW),  # expires at this very second: gone
        meta("ok-e", embargo_until=NOW),  # embargo over at this very second: shown
        meta("ok-x", expires_at=NOW + 1),
        *CANDIDATES,
    ]
    got = run({}, candidates=flagged)
    assert ids(got) == ["ok-e", "ok-x", "c0", "c1", "c2"]
    # The answer holds until the embargo of "e" ends (the first instant it could change).
    assert got.fresh_until == NOW + 1


@pytest.mark.parametrize(
    ("rule", "gone"),
    [
        ({"hide": ["c1", "c3"]}, {"c1", "c3"}),
        ({"hide_tags": ["Oil Prices"]}, {"c2"}),
        ({"hide_sections": ["SPORT"]}, {"c0"}),
    ],
)
def test_hides(rule: dict[str, Any], gone: set[str]) -> None:
    candidates = list(CANDIDATES)
    candidates[0] = meta("c0", section="Sport")
    candidates[2] = meta("c2", tags=("oil-prices",))
    got = ids(run({"r": rule}, candidates=candidates))
    assert not set(got) & gone and len(got) == 5
    assert got == [c.id for c in candidates if c.id not in gone][:5]


def test_pins_land_at_their_positions_beyond_the_list_at_the_end() -> None:
    got = run({"r": {"pin": [{"id": "p1", "position": 1}, {"id": "p2", "position": 40}]}})
    assert ids(got) == ["c0", "p1", "c1", "c2", "p2"]
    assert [p.pinned for p in got.items] == [False, True, False, False, True]


def test_unknown_hidden_and_excluded_pins_are_skipped() -> None:
    rules = {
        "a": {"pin": [{"id": "nope", "position": 0}, {"id": "gone", "position": 0}]},
        "b": {"pin": [{"id": "p1", "position": 0}, {"id": "p2", "position": 1}]},
        "c": {"hide": ["p2"]},  # hide beats pin
    }
    got = run(rules, blocked=("src", "c0"))
    assert ids(got) == ["p1", "c1", "c2", "c3", "c4"]


def test_a_pinned_sponsored_item_shows_and_an_unpinned_one_never() -> None:
    candidates = [meta("spon", sponsored=True), *CANDIDATES]
    assert "spon" not in ids(run({}, candidates=candidates))
    got = run({"r": {"pin": [{"id": "spon", "position": 2}]}}, candidates=candidates)
    assert ids(got)[2] == "spon" and got.items[2].pinned and got.items[2].meta.sponsored


def test_equal_positions_go_article_section_site_then_rule_id() -> None:
    rules = {
        "a-site": {"pin": [{"id": "c9", "position": 0}]},
        "b-section": {"scope": {"section": "world"}, "pin": [{"id": "c8", "position": 0}]},
        "z-article": {"scope": {"article_id": "src"}, "pin": [{"id": "c7", "position": 0}]},
        "y-article": {"scope": {"article_id": "src"}, "pin": [{"id": "c6", "position": 0}]},
    }
    assert ids(run(rules))[:4] == ["c6", "c7", "c8", "c9"]


def test_scopes_apply_only_in_scope() -> None:
    rules = {
        "other-article": {"scope": {"article_id": "elsewhere"}, "hide": ["c0"]},
        "other-section": {"scope": {"section": "Sport"}, "hide": ["c1"]},
        "this-section": {"scope": {"section": "WORLD"}, "hide": ["c2"]},
    }
    assert ids(run(rules)) == ["c0", "c1", "c3", "c4", "c5"]
    # A requested section is a scope too (the "for you" box of a section page).
    assert ids(run(rules, article_id=None, sections=("sport",))) == ["c0", "c2", "c3", "c4", "c5"]


def test_hide_box_beats_everything_in_scope() -> None:
    rules = {
        "pin": {"pin": [{"id": "p1", "position": 0}]},
        "off": {"scope": {"article_id": "src"}, "hide_box": True},
    }
    got = run(rules)
    assert got.items == [] and got.reason == HIDE_BOX_REASON
    assert run(rules, article_id="other").reason is None


def test_strictest_max_age_wins_and_undated_is_too_old() -> None:
    candidates = [
        meta("old", published_at="2027-01-01T00:00:00Z"),
        meta("week", published_at="2027-01-10T00:00:00Z"),
        meta("undated", published_at=None),
        *CANDIDATES,
    ]
    assert ids(run({"a": {"max_age_days": 30}}, candidates=candidates))[:2] == ["old", "week"]
    got = run({"a": {"max_age_days": 30}, "b": {"max_age_days": 7}}, candidates=candidates)
    assert ids(got)[:1] == ["week"] and "old" not in ids(got) and "undated" not in ids(got)
    # "week" turns too old on 2027-01-17T00:00:00Z: the answer holds until then.
    assert got.fresh_until == 1_800_000_000 - 8 * 3600 + 2 * DAY


def test_validity_windows_to_the_second() -> None:
    rule = {"r": {"hide": ["c0"], "valid_from": "2027-01-15T08:00:00Z",
                  "valid_until": "2027-01-15T09:00:00+01:00"}}  # fmt: skip
    # valid_until is 08:00:00Z too: an empty window, never in force.
    assert ids(run(rule))[0] == "c0"
    rule["r"]["valid_until"] = "2027-01-15T08:00:01Z"
    assert ids(run(rule, now=NOW - 1))[0] == "c0"
    got = run(rule, now=NOW)
    assert ids(got)[0] == "c1" and got.fresh_until == NOW + 1
    assert ids(run(rule, now=NOW + 1))[0] == "c0"


def test_fill_from_more_candidates_only_when_short() -> None:
    compiled = compile_rules(RuleSet(1, {"r": {"hide": ["c0", "c1"]}}))
    box = box_for(compiled, now=NOW)
    asked: list[bool] = []

    def more() -> list[tuple[ArticleMeta, float]]:
        asked.append(True)
        return [(m, 0.0) for m in CANDIDATES[5:]]

    got = arrange(box, [(m, 1.0) for m in CANDIDATES[:5]], 4, {}, more)
    assert [p.meta.id for p in got.items] == ["c2", "c3", "c4", "c5"] and asked
    asked.clear()
    arrange(box, [(m, 1.0) for m in CANDIDATES[:8]], 4, {}, more)
    assert not asked


def test_a_broken_rule_is_skipped_not_fatal() -> None:
    compiled = compile_rules(RuleSet(3, {"bad": {"valid_from": "soon"}, "ok": {"hide": ["c0"]}}))
    assert compiled.skipped == ["bad"] and len(compiled.site) == 1
    # A stored time with no UTC instant (written before validation caught it) is skipped too.
    edge = compile_rules(RuleSet(4, {"edge": {"valid_until": "9999-12-31T23:59:59-01:00"}}))
    assert edge.skipped == ["edge"]


def test_compiled_once_per_seq() -> None:
    compiler = RulesCompiler()
    first = compiler.get(RuleSet(4, {"r": {"hide": ["a"]}}))
    assert compiler.get(RuleSet(4, {"r": {"hide": ["a"]}})) is first
    assert compiler.get(RuleSet(5, {})) is not first
