"""The MIND replay's two protocols on a hand-built corpus, every metric worked out by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from models.foryou_evaluation.cases import (
    ReplayCase,
    click_events,
    replay_cases,
    split_cases,
    trending_at,
)
from models.foryou_evaluation.metrics import candidate_metrics
from models.foryou_evaluation.protocols import evaluate_cases
from models.importers import Impression
from models.ranking.config import RankingConfig
from models.ranking.source import ModelSource

NOW = datetime(2019, 11, 12, 14, 0, tzinfo=UTC)
L3, L5 = math.log2(3), math.log2(5)


@dataclass(frozen=True)
class Meta:
    id: str
    section: str = "news"
    published_at: str | None = None


# h lists a (0.8) and b (0.4); c, d are nobody's neighbours. Popularity (readers): c 3, a 2,
# d 1, b 0. The reader read h and was shown a, b, c, d; they clicked b.
LISTS: dict[str, list[tuple[str, float]]] = {"h": [("a", 0.8), ("b", 0.4)]}
CORPUS = ["h", "a", "b", "c", "d"]
COUNTS = {"c": 3, "a": 2, "d": 1}
CASE = ReplayCase("1", NOW, ("h",), frozenset({"b"}), ("a", "b", "c", "d"))
# Relevance only, so the hand sums are the scores (no freshness, no MMR reordering).
PLAIN = RankingConfig(freshness_half_life_hours=0, diversity=0.0, popularity_weight=0.0)


def source(sections: dict[str, str] | None = None) -> ModelSource[Meta]:
    metas = {i: Meta(i, (sections or {}).get(i, "news")) for i in CORPUS}
    return ModelSource(
        lambda i: LISTS.get(i, []) if i in metas else None,
        lambda ids: [metas.get(i) for i in ids],
    )


def rows(report: dict[str, list[dict[str, object]]], table: str) -> dict[str, dict[str, object]]:
    return {str(row["method"]).split(" (")[0]: row for row in report[table]}


def test_candidate_metrics_by_hand() -> None:
    # Clicks at ranks 2 and 4 of 4. MRR (MIND: every click) = (1/2 + 1/4) / 2. nDCG@5 =
    # (1/log2 3 + 1/log2 5) / (1 + 1/log2 3). AUC: of the 4 (click, non-click) pairs only
    # (rank 2, rank 3) is the right way round.
    got = candidate_metrics([0, 1, 0, 1])
    assert got == pytest.approx(
        {
            "hit@1": 0.0,
            "hit@3": 1.0,
            "mrr": 0.375,
            "ndcg@5": (1 / L3 + 1 / L5) / (1 + 1 / L3),
            "ndcg@10": (1 / L3 + 1 / L5) / (1 + 1 / L3),
            "auc": 0.25,
        }
    )
    assert candidate_metrics([1, 0])["auc"] == 1.0
    assert candidate_metrics([0, 0, 1])["auc"] == 0.0


def test_both_protocols_by_hand() -> None:
    config = RankingConfig(freshness_half_life_hours=0, diversity=0.0, popularity_weight=1.0)
    report = evaluate_cases(source(), [CASE], COUNTS, CORPUS, config=config, seed=0)
    candidates = rows(report, "candidate_rows")
    # No prior: a 0.8, b 0.4 scored; c and d unscored, so after them by popularity (c 3, d 1):
    # a, b, c, d -> the click at rank 2 of 4.
    assert candidates["for-you, no prior"] == pytest.approx(
        {"method": "for-you, no prior", "hit@1": 0.0, "hit@3": 1.0, "mrr": 0.5}
        | {"ndcg@5": 1 / L3, "ndcg@10": 1 / L3, "auc": 2 / 3}
    )
    # Prior 1, popularity / top (3): a 0.8 + 2/3, c 1, b 0.4, d 1/3 -> a, c, b, d: rank 3.
    assert candidates["for-you, prior 1"] == pytest.approx(
        {"method": "for-you, prior 1", "hit@1": 0.0, "hit@3": 1.0, "mrr": 1 / 3}
        | {"ndcg@5": 0.5, "ndcg@10": 0.5, "auc": 1 / 3}
    )
    # Most popular: c, a, d, b -> rank 4, below every unclicked candidate.
    assert candidates["most popular"] == pytest.approx(
        {"method": "most popular", "hit@1": 0.0, "hit@3": 0.0, "mrr": 0.25}
        | {"ndcg@5": 1 / L5, "ndcg@10": 1 / L5, "auc": 0.0}
    )
    # Whole corpus (read h never listed): the same orders, the popular list filling after the
    # ranked items; b at rank 2, 3 and 4 as above.
    corpus = rows(report, "rows")
    assert corpus["for-you, no prior"]["mrr"] == pytest.approx(0.5)  # history only: a, b
    assert [r["mrr"] for r in report["rows"][:2]] == pytest.approx([1 / 3, 0.5])
    assert corpus["most popular"]["mrr"] == pytest.approx(0.25)
    assert corpus["most popular"]["ndcg@10"] == pytest.approx(1 / L5)
    assert corpus["random"]["hit@10"] == 1.0  # 4 unread articles: anything finds b


def test_trending_at_replays_the_api_buckets() -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text)

    moment = at("2019-11-12T14:30:00+00:00")
    events = sorted(
        (at(when).timestamp(), article_id)
        for when, article_id in [
            ("2019-11-12T14:10:00+00:00", "a"),  # this hour: weight 1
            ("2019-11-12T14:30:00+00:00", "a"),  # at the impression itself: not before it
            ("2019-11-12T13:59:00+00:00", "b"),  # the previous hour: 0.5 ** (1/6)
            ("2019-11-12T08:00:00+00:00", "b"),  # 6 hours back: 0.5
            ("2019-11-12T15:00:00+00:00", "c"),  # after the impression
            ("2019-11-11T15:00:00+00:00", "d"),  # bucket 23 hours back: 0.5 ** (23/6)
            ("2019-11-11T14:59:00+00:00", "d"),  # bucket 24 hours back: out of the window
        ]
    )
    got = trending_at(events, moment)
    assert [a for a, _ in got] == ["b", "a", "d"]
    assert [c for _, c in got] == pytest.approx([0.5 ** (1 / 6) + 0.5, 1.0, 0.5 ** (23 / 6)])
    assert trending_at(events, moment, limit=1) == got[:1]
    # Clicks on corpus articles only, oldest first, a reader's first click on an article only
    # (the API counts a reader once per article).
    log = [
        Impression("2", "U2", "2019-11-12T15:00:00Z", [], [("a", True), ("N9", True)]),
        Impression("1", "U1", "2019-11-12T14:00:00Z", [], [("b", True), ("c", False)]),
        Impression("3", "U1", "2019-11-12T16:00:00Z", [], [("b", True), ("a", True)]),
    ]
    assert click_events(log, {i: Meta(i) for i in CORPUS}) == [
        (at("2019-11-12T14:00:00+00:00").timestamp(), "b"),
        (at("2019-11-12T15:00:00+00:00").timestamp(), "a"),
        (at("2019-11-12T16:00:00+00:00").timestamp(), "a"),
    ]


def test_trending_prior_section_affinity_and_baselines_by_hand() -> None:
    # The reader read h (sport). Trending at the impression: c 2 (news), b 1 (sport).
    sections = {"h": "sport", "a": "news", "b": "Sport", "c": "news", "d": "sport"}
    trending = {"1": [("c", 2.0), ("b", 1.0)]}
    config = RankingConfig(
        freshness_half_life_hours=0, diversity=0.0, popularity_weight=0.5, section_affinity=2.0
    )
    report = evaluate_cases(
        source(sections),
        [CASE],
        COUNTS,
        CORPUS,
        config=config,
        trending=trending,
        sections=sections,
    )
    corpus, candidates = rows(report, "rows"), rows(report, "candidate_rows")
    assert list(corpus) == [
        "for-you, prior 0.5, affinity 2",
        "for-you, prior 0.5",
        "for-you, no prior",
        "popular in your sections, affinity 2",
        "trending",
        "most popular",
        "random",
    ]
    # For-you: prior = 0.5 x count / 2 x (1 + 2 x sport share 1 for sport articles):
    # c 0.5, b 0.4 + 0.25 x 3 = 1.15, a 0.8 -> b, a, c: the click first.
    assert corpus["for-you, prior 0.5, affinity 2"]["mrr"] == 1.0
    assert candidates["for-you, prior 0.5, affinity 2"]["auc"] == 1.0
    # Without the affinity: a 0.8, b 0.4 + 0.25 = 0.65, c 0.5 -> rank 2.
    assert corpus["for-you, prior 0.5"]["mrr"] == 0.5
    assert candidates["for-you, prior 0.5"]["auc"] == pytest.approx(2 / 3)
    # No content: c 1 x 1, b 0.5 x 3 = 1.5 -> b, c, then a, d by popularity: rank 1.
    assert corpus["popular in your sections, affinity 2"]["mrr"] == 1.0
    assert candidates["popular in your sections, affinity 2"]["auc"] == 1.0
    # Trending order c, b: rank 2; most popular c, a, d, b: rank 4.
    assert corpus["trending"]["mrr"] == 0.5
    assert candidates["trending"]["auc"] == pytest.approx(2 / 3)
    assert corpus["most popular"]["mrr"] == 0.25
    assert candidates["most popular"]["auc"] == 0.0
    # Affinity off: no such baseline (it would be the popularity order again).
    plain = evaluate_cases(
        source(sections),
        [CASE],
        COUNTS,
        CORPUS,
        config=replace(config, section_affinity=0.0),
        trending=trending,
        sections=sections,
    )
    assert not any(m.startswith("popular in") for m in rows(plain, "rows"))


def test_impressions_without_both_labels_are_left_out_of_protocol_two() -> None:
    only_clicks = ReplayCase("2", NOW, ("h",), frozenset({"b"}), ())
    report = evaluate_cases(source(), [CASE, only_clicks], COUNTS, CORPUS, config=PLAIN, seed=0)
    # Protocol 1 averages both impressions (the same ranking finds b at rank 2 in each) ...
    assert rows(report, "rows")["for-you, no prior"]["mrr"] == pytest.approx(0.5)
    # ... protocol 2 only the one with an unclicked candidate.
    assert rows(report, "candidate_rows")["most popular"]["auc"] == 0.0


def test_replay_cases_keep_the_shown_corpus_candidates() -> None:
    known = {i: Meta(i) for i in CORPUS}

    def impression(number: int, history: list[str], shown: list[tuple[str, bool]]) -> Impression:
        return Impression(str(number), f"U{number}", "2019-11-12T14:00:00Z", history, shown)

    cases, counts = replay_cases(
        [
            # Outside the corpus (N9) and already read (h) candidates are dropped.
            impression(1, ["h"], [("N9", False), ("b", True), ("h", False), ("c", False)]),
            impression(2, ["h"], [("b", True), ("N9", False)]),  # no unclicked corpus one
            impression(3, ["N8"], [("b", True), ("c", False)]),  # no corpus history
        ],
        known,
    )
    assert [(c.impression_id, c.shown) for c in cases] == [("1", ("b", "c")), ("2", ())]
    assert counts["usable"] == 2 and counts["usable_candidates"] == 1
    assert counts["candidates"] == 2


def test_the_split_is_seeded_and_disjoint() -> None:
    cases = [ReplayCase(str(n), NOW, ("h",), frozenset({"b"})) for n in range(11)]
    tune, test = split_cases(cases, "tune", 4), split_cases(cases, "test", 4)
    assert len(tune) == 6 and len(test) == 5
    assert {c.impression_id for c in tune} | {c.impression_id for c in test} == {
        c.impression_id for c in cases
    }
    assert not {c.impression_id for c in tune} & {c.impression_id for c in test}
    assert split_cases(list(reversed(cases)), "tune", 4) == list(reversed(tune))
    assert split_cases(cases, "tune", 5) != tune
    assert split_cases(cases, "all") == cases
    with pytest.raises(ValueError, match="half"):
        split_cases(cases, "some")


def test_cli_reports_both_tables_and_sweeps(tmp_path: Path) -> None:
    from models.artifact import save_model
    from models.config import ModelConfig
    from models.importers import iter_mind
    from models.model import RelatedModel
    from scripts.foryou_eval_cmd import evaluate_foryou_cmd
    from tests.paths import TEST_DATA

    articles = list(iter_mind(TEST_DATA / "mind" / "news.tsv"))
    model = RelatedModel(config=ModelConfig(k=10)).fit(articles)
    save_model(model, articles, tmp_path / "model")
    seed_id = articles[0].id
    target = model.neighbours(seed_id)[0][0]
    other = next(a.id for a in articles if a.id not in (seed_id, target))
    behaviors = tmp_path / "behaviors.tsv"
    behaviors.write_text(
        "".join(
            f"{n}\tU{n}\t11/12/2019 2:14:46 PM\t{seed_id}\t{target}-1 {other}-0\n"
            for n in range(1, 5)
        )
    )
    base = ["--model", str(tmp_path / "model"), "--behaviors", str(behaviors)]
    result = CliRunner().invoke(evaluate_foryou_cmd, base)
    assert result.exit_code == 0, result.output
    assert "Whole corpus, all usable impressions: 4 impressions" in result.output
    assert "Impression candidates, all usable impressions: 4 impressions" in result.output
    weight = RankingConfig().popularity_weight
    assert f"| for-you, prior {weight:g} |" in result.output and "auc" in result.output
    assert "| trending (24 h of clicks before the impression) |" in result.output
    assert "prior counts trending" in result.output
    result = CliRunner().invoke(
        evaluate_foryou_cmd, [*base, "--half", "tune", "--sweep", "0,1", "--split-seed", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "on the tune half (split seed 2): 2 impressions" in result.output
    assert "| 0 |" in result.output and "| 1 |" in result.output
    assert "then smallest affinity, then smallest weight" in result.output
    # A grid of weights and section affinities, the prior fed by history readers.
    result = CliRunner().invoke(
        evaluate_foryou_cmd,
        [*base, "--prior-counts", "readers", "--sweep", "0.5", "--sweep-affinity", "0,2"],
    )
    assert result.exit_code == 0, result.output
    assert "prior counts readers" in result.output
    assert "| 0.5 | 0 |" in result.output and "| 0.5 | 2 |" in result.output
    assert "trending (24 h" not in result.output  # no trending replayed: no such baseline
    result = CliRunner().invoke(evaluate_foryou_cmd, [*base, "--section-affinity", "1"])
    assert result.exit_code == 0, result.output
    assert f"| for-you, prior {weight:g}, affinity 1 |" in result.output
    assert "| popular in your sections, affinity 1 |" in result.output
    bad = CliRunner().invoke(evaluate_foryou_cmd, [*base, "--sweep", "x"])
    assert bad.exit_code == 2
    bad = CliRunner().invoke(evaluate_foryou_cmd, [*base, "--sweep-affinity", "-1"])
    assert bad.exit_code == 2 and "--sweep-affinity" in bad.output
