"""Ranking of "Recommended for you": pure functions, shared by the API and the offline evaluation.

No Flask and no Redis here: the data comes through a :class:`Source` (the model directory, a
store, or Redis), so ``recs evaluate-foryou`` ranks with exactly the code the API runs. The
formula is documented in ``docs/recommendations.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
M = TypeVar("M", bound="Described")

LN2 = math.log(2.0)


class Described(Protocol):
    """What ranking needs to know of an article (``ArticleMeta`` and ``Article`` both fit)."""

    @property
    def id(self) -> str: ...

    @property
    def section(self) -> str: ...

    @property
    def published_at(self) -> str | None: ...


class Source(Protocol[K, M]):
    """Where ranking reads neighbour lists and article descriptions; ``K`` is the source's key."""

    def history_lists(self, ids: Sequence[str]) -> list[tuple[K, Sequence[tuple[K, float]]] | None]:
        """Key and stored neighbour list of each id, in order (``None`` for unknown ids)."""
        ...

    def neighbour_lists(self, keys: Sequence[K]) -> list[Sequence[tuple[K, float]]]:
        """Stored neighbour lists of known keys, in order."""
        ...

    def describe(self, keys: Sequence[K]) -> list[M | None]:
        """Descriptions of known keys, in order (``None`` if missing)."""
        ...


@dataclass(frozen=True, slots=True)
class RankingConfig:
    """Every knob of the ranking; validated on creation."""

    # Positions in the most-recent-first history after which a read counts half as much.
    history_half_life: float = 10.0
    # Hours after which a candidate's freshness factor halves; 0 turns freshness off.
    freshness_half_life_hours: float = 72.0
    # Per-section half-lives (keys case-folded), e.g. {"sport": 24}.
    section_half_life_hours: Mapping[str, float] = field(default_factory=dict)
    # Lowest freshness factor: an old article is damped, never zeroed.
    freshness_floor: float = 0.05
    # MMR trade-off: 0 ranks by relevance only, 1 by novelty only.
    diversity: float = 0.3
    # A candidate at least this similar to a chosen item is a near-duplicate: used only to fill.
    duplicate_threshold: float = 0.8
    max_history: int = 50
    max_candidates: int = 500
    # Candidates are described (metadata read) in relevance order, this many at a time, until
    # the MMR pool is full after the filters: freshness reorders within what was described.
    describe_batch: int = 32
    # MMR looks at the best max(mmr_pool, 4 * k) candidates (bounds the similarity look-ups).
    mmr_pool: int = 24

    def __post_init__(self) -> None:
        checks = [
            ("history_half_life", self.history_half_life > 0),
            ("freshness_half_life_hours", self.freshness_half_life_hours >= 0),
            ("freshness_floor", 0 < self.freshness_floor <= 1),
            ("diversity", 0 <= self.diversity < 1),
            ("duplicate_threshold", 0 < self.duplicate_threshold <= 1),
            ("max_history", 1 <= self.max_history <= 1000),
            ("max_candidates", 1 <= self.max_candidates <= 10_000),
            ("mmr_pool", 1 <= self.mmr_pool <= 10_000),
            ("describe_batch", 1 <= self.describe_batch <= 10_000),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"ranking setting {name} is out of range")
        for section, hours in self.section_half_life_hours.items():
            if not isinstance(section, str) or not isinstance(hours, int | float) or hours < 0:
                raise ValueError("section_half_life_hours must map sections to hours >= 0")


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
    history: dict[str, M]  # descriptions of the known history items, by id
    read: set[str]  # every history id used (known ones), never to be recommended


def recency_weight(position: int, half_life: float) -> float:
    """Weight of the history item at ``position`` (0 = most recently read)."""
    return float(0.5 ** (position / half_life))


@lru_cache(maxsize=65_536)
def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time as aware UTC (naive means UTC); ``None`` if absent or unparseable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def published_timestamp(published_at: str | None) -> float:
    """Unix seconds of a ``published_at`` (0 when undated or unparseable: sorts last)."""
    parsed = parse_time(published_at)
    return 0.0 if parsed is None else parsed.timestamp()


def freshness_factors(
    metas: Sequence[Described], now: datetime, config: RankingConfig
) -> list[float]:
    """Each item's freshness factor in [floor, 1]; undated items get the floor."""
    times = [parse_time(m.published_at) for m in metas]
    dated = [t for t in times if t is not None]
    if not dated:
        return [1.0] * len(metas)  # nothing dated: freshness cannot tell items apart
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # Ages count from the newest candidate when it is older than "now": this multiplies every
    # factor by the same constant (the order is unchanged), but an archive years old (Reuters
    # 1987) no longer underflows every factor to the floor.
    reference = min(now, max(dated))
    log_floor = math.log(config.freshness_floor)
    out = []
    for meta, published in zip(metas, times, strict=True):
        half_life = config.section_half_life_hours.get(
            meta.section.casefold(), config.freshness_half_life_hours
        )
        if not half_life:
            out.append(1.0)
        elif published is None:
            out.append(config.freshness_floor)
        else:
            hours = max(0.0, (reference - published).total_seconds() / 3600.0)
            # Log space, clamped: exp() of a huge negative number is never taken.
            out.append(math.exp(max(log_floor, -LN2 * hours / half_life)))
    return out


def neighbour_similarity(
    lists: Mapping[K, Sequence[tuple[K, float]]],
) -> Callable[[K, K], float]:
    """sim(a, b): the stored score of b in a's list or of a in b's (the larger), else 0."""
    table = {key: dict(neighbours) for key, neighbours in lists.items()}
    empty: dict[K, float] = {}

    def similarity(a: K, b: K) -> float:
        return max(table.get(a, empty).get(b, 0.0), table.get(b, empty).get(a, 0.0))

    return similarity


def diversify(
    keys: Sequence[K],
    scores: Sequence[float],
    similarity: Callable[[K, K], float],
    k: int,
    config: RankingConfig,
) -> list[int]:
    """Indices of up to ``k`` items in MMR order (``keys`` sorted by score, best first)."""
    if not keys or k <= 0:
        return []
    # Relevance enters MMR by rank, 1 for the best down towards 0: scale-free, so freshness
    # factors that spread scores 20-fold cannot let the redundancy term swamp relevance.
    n = len(keys)
    lam = 1.0 - config.diversity
    remaining = list(range(len(keys)))
    redundancy = [0.0] * len(keys)
    chosen: list[int] = []
    while remaining and len(chosen) < k:
        best, best_value = -1, -math.inf
        for i in remaining:
            if redundancy[i] >= config.duplicate_threshold:
                continue  # a near-duplicate of a chosen item: only used to fill
            value = lam * (1.0 - i / n) - (1.0 - lam) * redundancy[i]
            if value > best_value:  # strict: ties keep the better-scored (earlier) item
                best, best_value = i, value
        if best < 0:
            break
        chosen.append(best)
        remaining.remove(best)
        for i in remaining:
            redundancy[i] = max(redundancy[i], similarity(keys[i], keys[best]))
    # Only near-duplicates left: fill with them in score order rather than leave a gap.
    chosen.extend(remaining[: k - len(chosen)])
    return chosen


def unique(ids: Iterable[str]) -> list[str]:
    """Ids in order, repeats dropped (a re-read keeps its most recent position)."""
    return list(dict.fromkeys(ids))


def recommend(
    source: Source[K, M],
    history: Sequence[str],
    *,
    k: int,
    now: datetime,
    config: RankingConfig,
    exclude: Collection[str] = (),
    section: str | None = None,
) -> RankResult[M]:
    """Rank candidates from a most-recent-first history (see docs/recommendations.md)."""
    history = unique(history)[: config.max_history]
    found = source.history_lists(history)
    ignored = [hid for hid, hit in zip(history, found, strict=True) if hit is None]
    read_keys: set[K] = {hit[0] for hit in found if hit is not None}

    # 1. Relevance: sum over history items of recency weight x stored neighbour score. The hot
    # loop of a request: per-item contributions are worked out later, for the chosen few only.
    relevance: dict[K, float] = {}
    get = relevance.get
    weighted: list[tuple[str, float, Sequence[tuple[K, float]]]] = []
    for position, (hid, hit) in enumerate(zip(history, found, strict=True)):
        if hit is None:
            continue
        weight = recency_weight(position, config.history_half_life)
        weighted.append((hid, weight, hit[1]))
        for key, score in hit[1]:
            if score > 0:
                relevance[key] = get(key, 0.0) + weight * score
    for key in read_keys:
        relevance.pop(key, None)
    # Stable sort: equal relevance keeps first-seen order (most recent history item first).
    candidates = sorted(relevance, key=relevance.__getitem__, reverse=True)
    del candidates[config.max_candidates :]

    history_keys = [hit[0] for hit in found if hit is not None]
    read_ids = set(history) - set(ignored)
    pool_size = max(config.mmr_pool, 4 * k)

    # 2. Filters (unknown, read, excluded, other sections), reading metadata in relevance order
    # only as far as needed: describing every candidate would dominate the request.
    wanted = section.casefold() if section else None
    kept: list[tuple[K, M]] = []
    history_metas: dict[str, M] = {}
    start = 0
    first = True
    # ``first``, not ``start == 0``: with no candidates at all (a history of unknown ids) start
    # stays 0, and the loop must still end after the one pass that describes the history.
    while first or (len(kept) < max(pool_size, config.describe_batch) and start < len(candidates)):
        chunk = candidates[start : start + config.describe_batch]
        extra = history_keys if first else []
        first = False
        described = source.describe([*chunk, *extra])
        history_metas.update((m.id, m) for m in described[len(chunk) :] if m is not None)
        start += len(chunk)
        for key, meta in zip(chunk, described[: len(chunk)], strict=True):
            if meta is None or meta.id in read_ids or meta.id in exclude:
                continue
            if wanted is not None and meta.section.casefold() != wanted:
                continue
            kept.append((key, meta))

    # 3. Freshness.
    factors = freshness_factors([meta for _, meta in kept], now, config)
    scored = sorted(
        (
            (relevance[key] * factor, key, meta)
            for (key, meta), factor in zip(kept, factors, strict=True)
        ),
        key=lambda row: -row[0],
    )

    # 4. Diversity (MMR) over the best candidates, the stored lists as the similarity.
    pool = scored[:pool_size]
    pool_keys = [key for _, key, _ in pool]
    lists = dict(zip(pool_keys, source.neighbour_lists(pool_keys), strict=True))
    order = diversify(pool_keys, [s for s, _, _ in pool], neighbour_similarity(lists), k, config)

    tables = [(hid, weight, dict(neighbours)) for hid, weight, neighbours in weighted]
    items = []
    for index in order:
        score, key, meta = pool[index]
        parts = {
            hid: weight * table[key] for hid, weight, table in tables if table.get(key, 0.0) > 0
        }
        # Largest contribution first; ties keep history order (stable sort).
        because = tuple(sorted(parts, key=parts.__getitem__, reverse=True))
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


class ModelSource(Generic[M]):
    """A source keyed by article id over lookup functions (embedded mode, evaluation)."""

    def __init__(
        self,
        neighbours: Callable[[str], Sequence[tuple[str, float]] | None],
        describe: Callable[[Sequence[str]], list[M | None]],
    ) -> None:
        self._neighbours = neighbours
        self._describe = describe

    def history_lists(
        self, ids: Sequence[str]
    ) -> list[tuple[str, Sequence[tuple[str, float]]] | None]:
        """Each id with its neighbour list; ``None`` for unknown ids."""
        out: list[tuple[str, Sequence[tuple[str, float]]] | None] = []
        for article_id in ids:
            found = self._neighbours(article_id)
            out.append(None if found is None else (article_id, found))
        return out

    def neighbour_lists(self, keys: Sequence[str]) -> list[Sequence[tuple[str, float]]]:
        """Neighbour lists of known ids."""
        return [self._neighbours(key) or () for key in keys]

    def describe(self, keys: Sequence[str]) -> list[M | None]:
        """Descriptions by id."""
        return self._describe(keys)
