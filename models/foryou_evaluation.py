"""Offline replay of "Recommended for you" on MIND impressions (no Redis, no Flask).

For each impression whose reader has read at least one corpus article (the MIND ``History``
column) and then clicked at least one other corpus article, the reader's history is ranked with
:func:`models.ranking.recommend` -- the function the API runs -- over the whole corpus, and the
clicked articles are looked for in the list. Baselines on the same impressions: most popular
(readers whose history holds the article, counted over every impression's history: all MIND
histories precede the impression log) and random (seeded). Read articles are never
recommended by any method.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from models.artifact import LoadedModel
from models.importers.mind import Impression
from models.ranking import ModelSource, RankingConfig, fill, recommend
from models.records import Article

DEPTH = 100  # list length for MRR (a click below it counts 0)
CUTOFFS = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class ReplayCase:
    """One usable impression: the reader's history, most recent first, and the clicks to find."""

    impression_id: str
    time: datetime
    history: tuple[str, ...]
    clicked: frozenset[str]


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
            cases.append(
                ReplayCase(
                    impression.impression_id,
                    datetime.fromisoformat(impression.time),
                    history,
                    clicked,
                )
            )
    counts["usable"] = len(cases)
    counts["clicks_to_find"] = sum(len(c.clicked) for c in cases)
    return cases, dict(counts)


def popularity(impressions: Iterable[Impression], known: Mapping[str, Any]) -> list[str]:
    """Corpus articles by how many distinct readers have them in their history, then by id."""
    readers: dict[str, set[str]] = {}
    for impression in impressions:
        for article_id in impression.history:
            if article_id in known:
                readers.setdefault(article_id, set()).add(impression.user_id)
    counted = {article_id: len(users) for article_id, users in readers.items()}
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


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {name: 0.0 for name in [*(f"hit@{k}" for k in CUTOFFS), "mrr", "ndcg@10"]}
    return {name: float(np.mean([row[name] for row in rows])) for name in rows[0]}


def evaluate_foryou(
    loaded: LoadedModel,
    impressions: Sequence[Impression],
    *,
    config: RankingConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Hit rate@1/5/10, MRR@100 and nDCG@10 of the ranking and two baselines, same impressions."""
    config = config or RankingConfig()
    model = loaded.model
    articles: dict[str, Article] = {a.id: a for a in loaded.articles}
    cases, counts = replay_cases(impressions, articles)
    popular = popularity(impressions, articles)

    def neighbours(article_id: str) -> list[tuple[str, float]] | None:
        return model.neighbours(article_id) if article_id in model.index_ else None

    source: ModelSource[Article] = ModelSource(
        neighbours, lambda ids: [articles.get(i) for i in ids]
    )
    rng = random.Random(seed)
    everything = list(articles)
    methods: dict[str, Callable[[ReplayCase], list[str]]] = {}

    def personal(case: ReplayCase) -> list[str]:
        result = recommend(source, case.history, k=DEPTH, now=case.time, config=config)
        return [item.meta.id for item in result.items]

    def served(case: ReplayCase) -> list[str]:
        # As the API answers: personalised items, then the popular fallback to the full depth.
        chosen = personal(case)
        return chosen + fill(chosen, popular, set(case.history), DEPTH)

    def most_popular(case: ReplayCase) -> list[str]:
        return fill([], popular, set(case.history), DEPTH)

    def shuffled(case: ReplayCase) -> list[str]:
        order = rng.sample(everything, len(everything))
        return fill([], order, set(case.history), DEPTH)

    methods = {
        "for-you (as served: history, then popular)": served,
        "for-you (history only)": personal,
        "most popular": most_popular,
        f"random (seed {seed})": shuffled,
    }
    rows = []
    for name, rank in methods.items():
        scores = [_metrics(rank(case), case.clicked) for case in cases]
        rows.append({"method": name, **_mean(scores)})
    return {
        "counts": counts,
        "corpus": len(articles),
        "depth": DEPTH,
        "config": {
            "history_half_life": config.history_half_life,
            "freshness_half_life_hours": config.freshness_half_life_hours,
            "diversity": config.diversity,
            "duplicate_threshold": config.duplicate_threshold,
            "max_history": config.max_history,
        },
        "rows": rows,
    }
