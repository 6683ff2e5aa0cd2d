"""Offline replay of "Recommended for you" on MIND impressions (no Redis, no Flask).

Two protocols, both ranking with the functions the API runs (:mod:`models.ranking`):

1. **Whole corpus**: for each impression whose reader has read at least one corpus article (the
   MIND ``History`` column) and then clicked at least one other corpus article, the history is
   ranked with :func:`models.ranking.recommend` over the whole corpus, and the clicked articles
   are looked for in the list (hit rate@k, MRR, nDCG@10).
2. **Impression candidates** (the MIND benchmark's protocol): each impression's own shown
   articles (``ID-1`` clicked, ``ID-0`` not), restricted to the corpus and to articles not
   already read, are ordered by each method's score (:func:`models.ranking.score_candidates`
   for for-you); candidates a method does not score are ordered by its fallback, popularity.
   Usable when at least one clicked and one unclicked candidate remain (AUC needs both).

Baselines on the same impressions: most popular, trending, popular in your sections and random
(seeded). *Most popular* counts, per corpus article, the distinct readers with it in their
``History``: MIND histories are the clicks *before* the impression log's window (the log covers
the days after them), so this uses nothing that happens at or after any replayed impression.
*Trending* is what the API computes from its events, replayed from the log: the clicks of the
impressions *before* this one, in hourly buckets over 24 hours, each weighted ``0.5 ** (age /
6 h)`` (:func:`trending_at`, the API's defaults). The for-you popularity prior is fed one or the
other (``prior_counts``): ``"trending"`` is what the API feeds it, ``"readers"`` the weeks-old
proxy the replay used first. *Popular in your sections* is the prior alone, section affinity
included, without the content neighbours. Read articles are never recommended by any method.

For choosing settings honestly, the usable impressions can be split in two halves by a seeded
shuffle of their ids: choose on ``tune``, report ``test`` (and ``all``, saying so).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from models.artifact import LoadedModel
from models.importers.mind import Impression
from models.ranking.candidates import section_shares
from models.ranking.config import RankingConfig
from models.ranking.recommend import fill, recommend, score_candidates, unique
from models.ranking.source import ModelSource, Source
from models.records import Article

DEPTH = 100  # list length for MRR (a click below it counts 0)
CUTOFFS = (1, 5, 10)
# Impression lists hold ~3.6 corpus candidates on the MIND sample: hit@1 and hit@3 say more
# than hit@10 would.
CANDIDATE_CUTOFFS = (1, 3)
HALVES = ("all", "tune", "test")
PRIOR_COUNTS = ("trending", "readers")
# The API's trending defaults (service/foryou.py, service/redis/events.py), not tuned here.
TRENDING_WINDOW_HOURS = 24
TRENDING_HALF_LIFE_HOURS = 6.0
TRENDING_LIMIT = 500


@dataclass(frozen=True, slots=True)
class ReplayCase:
    """One usable impression: the reader's history, most recent first, and the clicks to find.

    ``shown`` is the impression's candidate list (corpus articles not already read, log order)
    when it holds both a clicked and an unclicked article, else empty: protocol 2 skips it.
    """

    impression_id: str
    time: datetime
    history: tuple[str, ...]
    clicked: frozenset[str]
    shown: tuple[str, ...] = ()


def replay_cases(
    impressions: Iterable[Impression], known: Mapping[str, Any]
) -> tuple[list[ReplayCase], dict[str, int]]:
    """The usable impressions, and how many were dropped for what."""
    counts = Counter[str]()
    cases = []
    for impression in impressions:
        counts["impressions"] += 1
        # MIND lists a history oldest first; ranking wants the most recent first.
        history = tuple(reversed(impression.history))
        read = set(history)
        known_history = [h for h in history if h in known]
        clicked = frozenset(c for c in impression.clicked if c in known and c not in read)
        if known_history:
            counts["with_known_history"] += 1
        if clicked:
            counts["with_known_click"] += 1
        if known_history and clicked:
            shown = tuple(
                dict.fromkeys(n for n, _ in impression.impressions if n in known and n not in read)
            )
            if not any(n in clicked for n in shown) or all(n in clicked for n in shown):
                shown = ()
            cases.append(
                ReplayCase(
                    impression.impression_id,
                    datetime.fromisoformat(impression.time),
                    history,
                    clicked,
                    shown,
                )
            )
    counts["usable"] = len(cases)
    counts["clicks_to_find"] = sum(len(c.clicked) for c in cases)
    counts["usable_candidates"] = sum(1 for c in cases if c.shown)
    counts["candidates"] = sum(len(c.shown) for c in cases)
    return cases, dict(counts)


def split_cases(cases: Sequence[ReplayCase], half: str, seed: int = 0) -> list[ReplayCase]:
    """``all`` the cases, or one half of them (``tune``: the first half, rounded up, of a
    seeded shuffle of their impression ids; ``test``: the rest). The same seed always splits
    the same impressions the same way."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {', '.join(HALVES)}")
    if half == "all":
        return list(cases)
    ids = sorted({case.impression_id for case in cases})
    random.Random(seed).shuffle(ids)
    tune = set(ids[: (len(ids) + 1) // 2])
    return [case for case in cases if (case.impression_id in tune) == (half == "tune")]


def popularity_counts(impressions: Iterable[Impression], known: Mapping[str, Any]) -> Counter[str]:
    """Corpus article -> how many distinct readers have it in their ``History``."""
    readers: dict[str, set[str]] = {}
    for impression in impressions:
        for article_id in impression.history:
            if article_id in known:
                readers.setdefault(article_id, set()).add(impression.user_id)
    return Counter({article_id: len(users) for article_id, users in readers.items()})


def click_events(
    impressions: Iterable[Impression], known: Mapping[str, Any]
) -> list[tuple[float, str]]:
    """(Unix time, article id) of the clicks on corpus articles in the log, oldest first: what
    the API's ``/v1/events`` would have counted for trending, where a reader counts once per
    article (service/redis/events.py; here the first click, as a history holds 50 reads)."""
    clicks = sorted(
        (datetime.fromisoformat(impression.time).timestamp(), article_id, impression.user_id)
        for impression in impressions
        for article_id in impression.clicked
        if article_id in known
    )
    seen: set[tuple[str, str]] = set()
    events = []
    for time, article_id, user_id in clicks:
        if (user_id, article_id) not in seen:
            seen.add((user_id, article_id))
            events.append((time, article_id))
    return events


def trending_at(
    events: Sequence[tuple[float, str]],
    moment: datetime,
    *,
    window_hours: int = TRENDING_WINDOW_HOURS,
    half_life_hours: float = TRENDING_HALF_LIFE_HOURS,
    limit: int = TRENDING_LIMIT,
) -> list[tuple[str, float]]:
    """Trending (id, count) at ``moment``, best first (ties by id), as the API computes it
    (service/redis/events.py): events in hourly UTC buckets, the last ``window_hours`` buckets, each
    weighted ``0.5 ** (age in hours / half_life_hours)``. Only events strictly before
    ``moment`` count: the impression's own clicks are what is to be found."""
    now = moment.timestamp()
    hour = int(now // 3600)
    oldest = (hour - window_hours + 1) * 3600
    start = bisect.bisect_left(events, (oldest, ""))
    stop = bisect.bisect_left(events, (now, ""))
    counts: dict[str, float] = {}
    for time, article_id in events[start:stop]:
        weight = math.pow(0.5, (hour - int(time // 3600)) / half_life_hours)
        counts[article_id] = counts.get(article_id, 0.0) + weight
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:limit]


def popularity(impressions: Iterable[Impression], known: Mapping[str, Any]) -> list[str]:
    """Corpus articles by how many distinct readers have them in their history, then by id."""
    counted = popularity_counts(impressions, known)
    rest = sorted(set(known) - set(counted))
    return sorted(counted, key=lambda a: (-counted[a], a)) + rest


def _metrics(ranked: Sequence[str], clicked: frozenset[str]) -> dict[str, float]:
    hits = [item in clicked for item in ranked[:DEPTH]]
    first = next((i for i, hit in enumerate(hits) if hit), None)
    out = {f"hit@{k}": float(any(hits[:k])) for k in CUTOFFS}
    out["mrr"] = 0.0 if first is None else 1.0 / (first + 1)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    dcg = float(sum(d for d, hit in zip(discounts, hits[:10], strict=False) if hit))
    ideal = float(discounts[: min(10, len(clicked))].sum())
    out["ndcg@10"] = dcg / ideal
    return out


def _ndcg(labels: Sequence[int], k: int) -> float:
    dcg = sum(y / math.log2(i + 2) for i, y in enumerate(labels[:k]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, sum(labels))))
    return dcg / ideal


def candidate_metrics(labels: Sequence[int]) -> dict[str, float]:
    """Metrics of one impression's candidates in ranked order (1: clicked, 0: not).

    MIND's definitions: MRR averages 1/rank over *all* clicks; nDCG with binary gains; AUC the
    share of (clicked, unclicked) pairs ranked the right way round (the order is strict, so
    there are no ties).
    """
    positives = sum(labels)
    negatives = len(labels) - positives
    out = {f"hit@{k}": float(any(labels[:k])) for k in CANDIDATE_CUTOFFS}
    out["mrr"] = sum(y / (i + 1) for i, y in enumerate(labels)) / positives
    out["ndcg@5"] = _ndcg(labels, 5)
    out["ndcg@10"] = _ndcg(labels, 10)
    # Pairs in order: each unclicked candidate counts the clicked ones still below it.
    below, correct = positives, 0
    for y in labels:
        if y:
            below -= 1
        else:
            correct += below
    out["auc"] = 1.0 - correct / (positives * negatives)
    return out


def _mean(rows: list[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    if not rows:
        return {name: 0.0 for name in names}
    return {name: float(np.mean([row[name] for row in rows])) for name in names}


TABLE_METRICS = (*(f"hit@{k}" for k in CUTOFFS), "mrr", "ndcg@10")
CANDIDATE_METRICS = (*(f"hit@{k}" for k in CANDIDATE_CUTOFFS), "mrr", "ndcg@5", "ndcg@10", "auc")


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
        scores = [_metrics(rank(case), case.clicked) for case in cases]
        rows.append({"method": name, **_mean(scores, TABLE_METRICS)})

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
        candidate_rows.append({"method": name, **_mean(scores, CANDIDATE_METRICS)})
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
