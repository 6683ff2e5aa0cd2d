"""The ranking itself: :func:`recommend` (filters, freshness, MMR, explanations) and
:func:`score_candidates` for protocols that rank a fixed candidate list."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic

from models.ranking.candidates import candidates, section_boosts
from models.ranking.config import RankingConfig
from models.ranking.diversity import mmr, similarity_matrix
from models.ranking.freshness import freshness_factors
from models.ranking.source import M, Source


@dataclass(frozen=True, slots=True)
class Recommendation(Generic[M]):
    """One ranked item: its description, final score and the history ids that led to it."""

    meta: M
    score: float
    because: tuple[str, ...]


@dataclass(slots=True)
class RankResult(Generic[M]):
    """The personalised part of an answer (fallbacks are added by the caller)."""

    items: list[Recommendation[M]]
    ignored: list[str]  # history ids the source does not know
    history: Mapping[str, M]  # descriptions of the known history items, by id (lazy)
    read: set[str]  # every history id used (known ones), never to be recommended


def unique(ids: Iterable[str]) -> list[str]:
    """Ids in order, repeats dropped (a re-read keeps its most recent position)."""
    return list(dict.fromkeys(ids))


class _History(Mapping[str, M]):
    """History id -> description, decoded only when asked (the API reads the contributors')."""

    def __init__(self, positions: dict[str, int], described: Sequence[M | None]) -> None:
        self._positions = positions
        self._described = described

    def __getitem__(self, article_id: str) -> M:
        meta = self._described[self._positions[article_id]]
        if meta is None:
            raise KeyError(article_id)
        return meta

    def __iter__(self) -> Iterator[str]:
        return (i for i, p in self._positions.items() if self._described[p] is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _popular(
    history: Sequence[str], popularity: Sequence[tuple[str, float]], config: RankingConfig
) -> list[tuple[str, float]]:
    """The popular articles the prior applies to (none when it is off or there is no history)."""
    if not config.popularity_weight or not history:
        return []
    return list(popularity[: config.popular_candidates])


def score_candidates(
    source: Source[M],
    history: Sequence[str],
    ids: Sequence[str],
    *,
    now: datetime,
    config: RankingConfig,
    popularity: Sequence[tuple[str, float]] = (),
) -> list[float]:
    """The score :func:`recommend` gives each of ``ids`` before its filters and MMR:
    ``(rel + prior) x freshness``, 0 for an id neither listed by the history nor popular (or
    unknown, or read). For protocols that rank a fixed candidate list (MIND impressions)."""
    history = unique(history)[: config.max_history]
    popular = _popular(history, popularity, config)
    lists = source.history_lists(history, [*(article_id for article_id, _ in popular), *ids])
    keys = lists.extra[len(popular) :]
    if all(key is None for key in lists.keys):
        popular = []  # as in recommend: no prior without a known history
    found = candidates(
        lists, history, popular, config, section_boosts(source, lists, popular, config)
    )
    scores = found.score_of(keys)
    scored = [(i, key) for i, key in enumerate(keys) if key is not None and scores[i] > 0]
    described = source.describe([key for _, key in scored])
    metas = [described[j] for j in range(len(scored))]
    factors = freshness_factors([m for m in metas if m is not None], now, config)
    factor = iter(factors)
    for (i, _), meta in zip(scored, metas, strict=True):
        scores[i] = scores[i] * next(factor) if meta is not None else 0.0
    return scores


def recommend(
    source: Source[M],
    history: Sequence[str],
    *,
    k: int,
    now: datetime,
    config: RankingConfig,
    exclude: Collection[str] = (),
    section: str | None = None,
    popularity: Sequence[tuple[str, float]] = (),
) -> RankResult[M]:
    """Rank candidates from a most-recent-first history (see docs/recommendations.md).

    ``popularity``: (article id, popularity) best first, e.g. trending counts; used only when
    ``config.popularity_weight`` > 0, and only its first ``config.popular_candidates``.
    """
    history = unique(history)[: config.max_history]
    popular = _popular(history, popularity, config)
    lists = source.history_lists(history, [article_id for article_id, _ in popular])
    ignored = [hid for hid, key in zip(history, lists.keys, strict=True) if key is None]
    read_ids = set(history) - set(ignored)
    if not read_ids:
        # Nothing known of the reader: no personal score for the prior to adjust. The caller's
        # trending and latest fallbacks fill the box, in their own order.
        popular = []

    # 1. Relevance (+ prior), with numpy over the concatenated lists: the hot part of a request.
    found = candidates(
        lists, history, popular, config, section_boosts(source, lists, popular, config)
    )
    history_keys = [key for key in lists.keys if key is not None]
    history_ids = [hid for hid, key in zip(history, lists.keys, strict=True) if key is not None]
    pool_size = max(config.mmr_pool, 4 * k)

    # 2. Filters (unknown, read, excluded, other sections), reading metadata in score order
    # only as far as needed: describing every candidate would dominate the request.
    wanted = section.casefold() if section else None
    kept: list[tuple[int, float, M]] = []
    history_metas: Mapping[str, M] = {}
    start = 0
    first = True
    # ``first``, not ``start == 0``: with no candidates at all (a history of unknown ids) start
    # stays 0, and the loop must still end after the one pass that describes the history.
    while first or (len(kept) < max(pool_size, config.describe_batch) and start < len(found)):
        chunk, relevance = found.slice(start, start + config.describe_batch)
        described = source.describe([*chunk, *(history_keys if first else ())])
        if first:
            # Lazy: only the history items that explain a chosen item are ever decoded.
            offset = len(chunk)
            history_metas = _History(
                {hid: offset + i for i, hid in enumerate(history_ids)}, described
            )
        first = False
        for i, key in enumerate(chunk):
            meta = described[i]
            if meta is None or meta.id in read_ids or meta.id in exclude:
                continue
            if wanted is not None and meta.section.casefold() != wanted:
                continue
            kept.append((key, relevance[i], meta))
        start += len(chunk)

    # 3. Freshness.
    factors = freshness_factors([meta for _, _, meta in kept], now, config)
    scored = sorted(
        (
            (score * factor, key, meta)
            for (key, score, meta), factor in zip(kept, factors, strict=True)
        ),
        key=lambda row: -row[0],
    )

    # 4. Diversity (MMR) over the best candidates, the stored lists as the similarity.
    pool = scored[:pool_size]
    pool_keys = [key for _, key, _ in pool]
    sim = similarity_matrix(pool_keys, source.neighbour_lists(pool_keys))
    order = mmr(len(pool), sim.__getitem__, k, config)  # the matrix is symmetric

    # 5. Explanations of the chosen few: the history items that listed them.
    chosen = [pool[index][1] for index in order]
    parts: dict[int, dict[str, float]] = {key: {} for key in chosen}
    for key, owner, value in found.contributions(chosen):
        parts[key][history[owner]] = value  # history order: ties keep it (stable sort)
    items = []
    for index in order:
        score, key, meta = pool[index]
        contributions = parts[key]
        # Largest contribution first; a popular-only candidate has none.
        because = tuple(sorted(contributions, key=contributions.__getitem__, reverse=True))
        items.append(Recommendation(meta=meta, score=score, because=because))
    return RankResult(items=items, ignored=ignored, history=history_metas, read=read_ids)


def fill(
    chosen: Sequence[str], fallback: Iterable[str], blocked: Collection[str], k: int
) -> list[str]:
    """Ids of ``fallback`` to append to ``chosen`` until ``k``: no repeats, none ``blocked``."""
    seen = set(chosen)
    out: list[str] = []
    for item in fallback:
        if len(chosen) + len(out) >= k:
            break
        if item in seen or item in blocked:
            continue
        seen.add(item)
        out.append(item)
    return out
