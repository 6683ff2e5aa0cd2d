"""The two protocols, for for-you and the baselines on the same impressions."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from models.artifact import LoadedModel
from models.foryou_evaluation.cases import (
    ReplayCase,
    click_events,
    popularity_counts,
    replay_cases,
    split_cases,
    trending_at,
)
from models.foryou_evaluation.metrics import (
    CANDIDATE_METRICS,
    DEPTH,
    TABLE_METRICS,
    candidate_metrics,
    mean_metrics,
    ranked_metrics,
)
from models.importers.mind import Impression
from models.ranking.candidates import section_shares
from models.ranking.config import RankingConfig
from models.ranking.recommend import fill, recommend, score_candidates, unique
from models.ranking.source import ModelSource, Source
from models.records import Article

PRIOR_COUNTS = ("trending", "readers")


def evaluate_cases(
    source: Source[Any],
    cases: Sequence[ReplayCase],
    counts: Mapping[str, float],
    everything: Sequence[str],
    *,
    config: RankingConfig,
    seed: int = 0,
    trending: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    sections: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Both protocols over ``cases``; ``counts``: article id -> popularity (readers).

    ``everything``: every corpus article id (the random baseline's pool). ``trending``:
    impression id -> the trending (id, count) pairs at that impression (:func:`trending_at`);
    when given, they feed the prior and fill the served list (as in the API) and the trending
    baseline is reported, else ``counts`` feed the prior. ``sections``: article id -> section,
    for the "popular in your sections" baseline (reported when the section affinity is on).
    """
    counts = Counter(counts)  # a missing article counts 0
    popular = sorted((a for a in counts if counts[a] > 0), key=lambda a: (-counts[a], a))
    popular += sorted(set(everything) - set(popular))
    # The prior's input, as the API passes trending: (id, count), most popular first.
    pairs = [(a, float(counts[a])) for a in popular if counts[a] > 0]
    plain = replace(config, popularity_weight=0.0)
    weight, affinity = config.popularity_weight, config.section_affinity
    rng = random.Random(seed)

    def prior(case: ReplayCase) -> Sequence[tuple[str, float]]:
        return pairs if trending is None else trending.get(case.impression_id, ())

    def fallback(case: ReplayCase) -> list[str]:
        # The API fills with trending, then latest; MIND has no dates, so most popular stands
        # in for latest.
        if trending is None:
            return popular
        return [a for a, _ in trending.get(case.impression_id, ())] + popular

    def personal(case: ReplayCase, cfg: RankingConfig) -> list[str]:
        result = recommend(
            source, case.history, k=DEPTH, now=case.time, config=cfg, popularity=prior(case)
        )
        return [item.meta.id for item in result.items]

    def served(cfg: RankingConfig) -> Callable[[ReplayCase], list[str]]:
        def rank(case: ReplayCase) -> list[str]:
            # As the API answers: ranked items, then the popular fallback to the full depth.
            chosen = personal(case, cfg)
            return chosen + fill(chosen, fallback(case), set(case.history), DEPTH)

        return rank

    def in_sections(case: ReplayCase) -> dict[str, float]:
        # The prior of for-you without its content part: popularity / top x (1 + G x share of
        # the reader's known history in the article's section), over the same popular pool.
        assert sections is not None
        history = unique(case.history)[: config.max_history]
        known = [(p, h) for p, h in enumerate(history) if h in sections]
        shares = section_shares(
            [sections[h] for _, h in known], [p for p, _ in known], config.history_half_life
        )
        pool = [(a, c) for a, c in prior(case)[: config.popular_candidates] if c > 0]
        top = max((c for _, c in pool), default=0.0)
        return {
            a: c / top * (1.0 + affinity * shares.get(sections.get(a, "").casefold(), 0.0))
            for a, c in pool
        }

    def popular_in_sections(case: ReplayCase) -> list[str]:
        scores = in_sections(case)
        ranked = sorted(scores, key=lambda a: -scores[a])  # stable: ties in popularity order
        return fill([], ranked + fallback(case), set(case.history), DEPTH)

    def most_popular(case: ReplayCase) -> list[str]:
        return fill([], popular, set(case.history), DEPTH)

    def trending_only(case: ReplayCase) -> list[str]:
        return fill([], fallback(case), set(case.history), DEPTH)

    def shuffled(case: ReplayCase) -> list[str]:
        order = rng.sample(list(everything), len(everything))
        return fill([], order, set(case.history), DEPTH)

    with_sections = affinity > 0 and sections is not None

    def with_prior(
        make: Callable[[RankingConfig], Callable[[ReplayCase], list[str]]], suffix: str
    ) -> dict[str, Callable[[ReplayCase], list[str]]]:
        """The configured prior (and, with an affinity, the same prior without it)."""
        out: dict[str, Callable[[ReplayCase], list[str]]] = {}
        if weight > 0:
            label = f"prior {weight:g}" + (f", affinity {affinity:g}" if affinity else "")
            out[f"for-you, {label}{suffix}"] = make(config)
            if affinity:
                no_affinity = replace(config, section_affinity=0.0)
                out[f"for-you, prior {weight:g}{suffix}"] = make(no_affinity)
        return out

    methods = with_prior(served, " (as served: then popular)")
    methods["for-you, no prior (as served: then popular)"] = served(plain)
    methods["for-you, no prior (history only)"] = lambda case: personal(case, plain)
    if with_sections:
        methods[f"popular in your sections, affinity {affinity:g}"] = popular_in_sections
    if trending is not None:
        methods["trending (24 h of clicks before the impression)"] = trending_only
    methods["most popular"] = most_popular
    methods[f"random (seed {seed})"] = shuffled
    rows = []
    for name, rank in methods.items():
        scores = [ranked_metrics(rank(case), case.clicked) for case in cases]
        rows.append({"method": name, **mean_metrics(scores, TABLE_METRICS)})

    # Protocol 2: each impression's shown candidates.
    def base(case: ReplayCase) -> list[str]:
        # Ties left by every key below fall to this seeded shuffle, the same for all methods.
        order = list(case.shown)
        random.Random(f"{seed}:{case.impression_id}").shuffle(order)
        return order

    def by_score(cfg: RankingConfig) -> Callable[[ReplayCase], list[str]]:
        def rank(case: ReplayCase) -> list[str]:
            order = base(case)
            scores = dict(
                zip(
                    order,
                    score_candidates(
                        source,
                        case.history,
                        order,
                        now=case.time,
                        config=cfg,
                        popularity=prior(case),
                    ),
                    strict=True,
                )
            )
            # Unscored candidates (0) come after the scored ones, by the fallback: popularity.
            return sorted(order, key=lambda a: (-scores[a], -counts[a]))

        return rank

    def by_trending(case: ReplayCase) -> list[str]:
        trend = dict(trending.get(case.impression_id, ())) if trending is not None else {}
        return sorted(base(case), key=lambda a: (-trend.get(a, 0.0), -counts[a]))

    def by_sections(case: ReplayCase) -> list[str]:
        scores = in_sections(case)
        return sorted(base(case), key=lambda a: (-scores.get(a, 0.0), -counts[a]))

    candidate_methods = with_prior(by_score, "")
    candidate_methods["for-you, no prior"] = by_score(plain)
    if with_sections:
        candidate_methods[f"popular in your sections, affinity {affinity:g}"] = by_sections
    if trending is not None:
        candidate_methods["trending (24 h of clicks before the impression)"] = by_trending
    candidate_methods["most popular"] = lambda case: sorted(base(case), key=lambda a: -counts[a])
    candidate_methods[f"random (seed {seed})"] = base
    shown = [case for case in cases if case.shown]
    candidate_rows = []
    for name, rank in candidate_methods.items():
        scores = [candidate_metrics([int(a in case.clicked) for a in rank(case)]) for case in shown]
        candidate_rows.append({"method": name, **mean_metrics(scores, CANDIDATE_METRICS)})
    return {"rows": rows, "candidate_rows": candidate_rows}


def model_source(loaded: LoadedModel) -> tuple[ModelSource[Article], dict[str, Article]]:
    """A ranking source over a loaded model's lists and articles, and the articles by id."""
    model = loaded.model
    articles: dict[str, Article] = {a.id: a for a in loaded.articles}

    def neighbours(article_id: str) -> list[tuple[str, float]] | None:
        return model.neighbours(article_id) if article_id in model.index_ else None

    source: ModelSource[Article] = ModelSource(
        neighbours, lambda ids: [articles.get(i) for i in ids], lambda i: i in model.index_
    )
    return source, articles


def evaluate_foryou(
    loaded: LoadedModel,
    impressions: Sequence[Impression],
    *,
    config: RankingConfig | None = None,
    seed: int = 0,
    half: str = "all",
    split_seed: int = 0,
    prior_counts: str = "trending",
) -> dict[str, Any]:
    """Both protocols for the ranking and the baselines, on the same impressions.

    ``half``/``split_seed``: evaluate on all usable impressions or on one seeded half
    (:func:`split_cases`); the counts are of the whole log, ``evaluated`` of the half.
    ``prior_counts``: what feeds the popularity prior, ``"trending"`` (the log's clicks before
    each impression, as the API's events) or ``"readers"`` (history readers, as most popular).
    """
    if prior_counts not in PRIOR_COUNTS:
        raise ValueError(f"prior_counts must be one of {', '.join(PRIOR_COUNTS)}")
    config = config or RankingConfig()
    source, articles = model_source(loaded)
    cases, counts = replay_cases(impressions, articles)
    chosen = split_cases(cases, half, split_seed)
    counted = popularity_counts(impressions, articles)
    trending = None
    if prior_counts == "trending":
        events = click_events(impressions, articles)
        trending = {case.impression_id: trending_at(events, case.time) for case in chosen}
    tables = evaluate_cases(
        source,
        chosen,
        counted,
        list(articles),
        config=config,
        seed=seed,
        trending=trending,
        sections={a.id: a.section for a in articles.values()},
    )
    return {
        "counts": counts,
        "evaluated": {
            "half": half,
            "split_seed": split_seed,
            "usable": len(chosen),
            "clicks_to_find": sum(len(c.clicked) for c in chosen),
            "usable_candidates": sum(1 for c in chosen if c.shown),
            "candidates": sum(len(c.shown) for c in chosen),
        },
        "corpus": len(articles),
        "depth": DEPTH,
        "config": {
            "history_half_life": config.history_half_life,
            "freshness_half_life_hours": config.freshness_half_life_hours,
            "diversity": config.diversity,
            "duplicate_threshold": config.duplicate_threshold,
            "max_history": config.max_history,
            "popularity_weight": config.popularity_weight,
            "popular_candidates": config.popular_candidates,
            "section_affinity": config.section_affinity,
            "prior_counts": prior_counts,
        },
        **tables,
    }
