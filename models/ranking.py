"""Ranking of "Recommended for you": pure functions, shared by the API and the offline evaluation.

No Flask and no Redis here: the data comes through a :class:`Source` (the model directory, a
store, or Redis), so ``recs evaluate-foryou`` ranks with exactly the code the API runs. The
formula is documented in ``docs/recommendations.md``.
"""

from __future__ import annotations

import math
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Generic, NamedTuple, Protocol, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)
M = TypeVar("M", bound="Described")
M_co = TypeVar("M_co", bound="Described", covariant=True)

LN2 = math.log(2.0)


class Described(Protocol):
    """What ranking needs to know of an article (``ArticleMeta`` and ``Article`` both fit)."""

    @property
    def id(self) -> str: ...

    @property
    def section(self) -> str: ...

    @property
    def published_at(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class HistoryLists:
    """The stored neighbour lists of a history, concatenated, as a source reads them.

    Keys are the source's integer keys (Redis: row numbers). ``neighbours`` and ``scores`` hold
    every known history item's list, one after the other in history order, ``counts[i]``
    entries for ``ids[i]`` (0 when unknown): one flat array lets ranking sum relevance with
    numpy instead of a Python loop over every (history item, neighbour) pair.
    """

    keys: list[int | None]  # per history id, its key (None: unknown to the source)
    counts: list[int]  # per history id, how many neighbours its list has
    neighbours: np.ndarray  # integer keys
    scores: np.ndarray  # float64 stored scores, aligned with ``neighbours``
    extra: list[int | None]  # keys of the ``extra`` ids asked for (popular articles)


class Lists(NamedTuple):
    """Several neighbour lists concatenated: ``counts[i]`` entries for the i-th list."""

    counts: Sequence[int]
    neighbours: np.ndarray  # integer keys
    scores: np.ndarray  # float64


class Source(Protocol[M_co]):
    """Where ranking reads neighbour lists and article descriptions, by integer key."""

    def history_lists(self, ids: Sequence[str], extra: Sequence[str] = ()) -> HistoryLists:
        """Keys and neighbour lists of ``ids``, and the keys of ``extra`` ids, in one read."""
        ...

    def neighbour_lists(self, keys: Sequence[int]) -> Lists:
        """Stored neighbour lists of known keys, in order, concatenated."""
        ...

    def describe(self, keys: Sequence[int]) -> Sequence[M_co | None]:
        """Descriptions of known keys, in order (``None`` if missing); may decode lazily."""
        ...

    def sections(self, keys: Sequence[int]) -> list[str | None]:
        """Sections of known keys, in order (``None`` if missing): the metadata only, for the
        section-affinity prior (no neighbour lists)."""
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
    # Popularity prior: a candidate gains popularity_weight x (its popularity / the top one's)
    # before freshness; 0 turns it off. Only the popular_candidates most popular articles get
    # it, and they join the candidates even when no history item lists them. 10 was chosen
    # on half of the MIND replay's impressions, the prior fed trending counts as in the API
    # (docs/evaluation.md); it applies only when a caller passes popularity counts.
    popularity_weight: float = 10.0
    popular_candidates: int = 100
    # Section affinity of the prior: a popular article's prior is multiplied by 1 +
    # section_affinity x the reader's (recency-weighted) share of known history in its section,
    # so "popular in the sections you read" outranks "popular elsewhere". 0 (off): chosen on
    # the same half of the MIND replay, where no value above 0 found more clicks.
    section_affinity: float = 0.0

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
            ("popularity_weight", 0 <= self.popularity_weight <= 1000),
            ("popular_candidates", 0 <= self.popular_candidates <= 10_000),
            ("section_affinity", 0 <= self.section_affinity <= 1000),
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
    history: Mapping[str, M]  # descriptions of the known history items, by id (lazy)
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@lru_cache(maxsize=65_536)
def _micros(value: str | None) -> int | None:
    """A ``published_at`` as integer microseconds since 1970 (``None`` if absent or bad)."""
    parsed = parse_time(value)
    return None if parsed is None else (parsed - _EPOCH) // _MICROSECOND


def freshness_factors(
    metas: Sequence[Described], now: datetime, config: RankingConfig
) -> list[float]:
    """Each item's freshness factor in [floor, 1]; undated items get the floor."""
    # Integer microseconds, cached per string: the same ages as datetime arithmetic
    # (timedelta.total_seconds() divides the same integer), for a fraction of the cost.
    times = [_micros(m.published_at) for m in metas]
    dated = [t for t in times if t is not None]
    if not dated:
        return [1.0] * len(metas)  # nothing dated: freshness cannot tell items apart
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # Ages count from the newest candidate when it is older than "now": this multiplies every
    # factor by the same constant (the order is unchanged), but an archive years old (Reuters
    # 1987) no longer underflows every factor to the floor.
    reference = min((now - _EPOCH) // _MICROSECOND, max(dated))
    log_floor = math.log(config.freshness_floor)
    sections, default = config.section_half_life_hours, config.freshness_half_life_hours
    out = []
    for meta, published in zip(metas, times, strict=True):
        half_life = sections.get(meta.section.casefold(), default) if sections else default
        if not half_life:
            out.append(1.0)
        elif published is None:
            out.append(config.freshness_floor)
        else:
            hours = max(0.0, (reference - published) / 10**6 / 3600.0)
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
    n = len(keys)
    return mmr(n, lambda best: [similarity(keys[i], keys[best]) for i in range(n)], k, config)


def mmr(
    n: int, similar_to: Callable[[int], Sequence[float]], k: int, config: RankingConfig
) -> list[int]:
    """MMR over ``n`` items ranked best first: indices of up to ``k`` of them, in order.

    ``similar_to(j)[i]``: similarity of item i to item j (read once per chosen j).
    """
    if n == 0 or k <= 0:
        return []
    # Relevance enters MMR by rank, 1 for the best down towards 0: scale-free, so freshness
    # factors that spread scores 20-fold cannot let the redundancy term swamp relevance.
    lam = 1.0 - config.diversity
    penalty = 1.0 - lam
    relevance = [lam * (1.0 - i / n) for i in range(n)]
    threshold = config.duplicate_threshold
    remaining = list(range(n))
    redundancy = [0.0] * n
    chosen: list[int] = []
    while remaining and len(chosen) < k:
        best, best_value = -1, -math.inf
        for i in remaining:
            if redundancy[i] >= threshold:
                continue  # a near-duplicate of a chosen item: only used to fill
            value = relevance[i] - penalty * redundancy[i]
            if value > best_value:  # strict: ties keep the better-scored (earlier) item
                best, best_value = i, value
        if best < 0:
            break
        chosen.append(best)
        remaining.remove(best)
        similar = similar_to(best)
        for i in remaining:
            if similar[i] > redundancy[i]:
                redundancy[i] = similar[i]
    # Only near-duplicates left: fill with them in score order rather than leave a gap.
    chosen.extend(remaining[: k - len(chosen)])
    return chosen


def unique(ids: Iterable[str]) -> list[str]:
    """Ids in order, repeats dropped (a re-read keeps its most recent position)."""
    return list(dict.fromkeys(ids))


class Candidates:
    """Relevance of one history's candidates (step 1 of :func:`recommend`).

    Ordered best first by score = relevance + popularity prior, ties in first-seen order (most
    recent history item first, popular-only candidates last), read keys removed, at most
    ``max_candidates``. The order is worked out lazily, for the prefix ranking reads (usually
    32 of ~1,000): :meth:`slice` partitions, then sorts only that prefix. The ``entry_*`` arrays
    keep every positive (history item, neighbour) contribution, so the ``because`` of the few
    chosen items needs no per-item dictionaries.
    """

    def __init__(
        self,
        keys: np.ndarray,
        scores: np.ndarray,
        first: np.ndarray,
        limit: int,
        entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        self._keys, self._scores, self._first = keys, scores, first
        self._size = min(len(keys), limit)
        self._order = np.zeros(0, dtype=np.intp)  # the exact order of the first len() items
        (self.entry_keys, self.entry_owner, self.entry_value, self.entry_group, self.grouped) = (
            entries
        )

    def __len__(self) -> int:
        return self._size

    def _extend(self, stop: int) -> None:
        n = len(self._keys)
        if stop >= n:
            self._order = np.lexsort((self._first, -self._scores))
            return
        # The top ``stop`` by score, plus everything tied with the lowest of them, so that
        # the tie order (first seen) is exact across the cut.
        top = np.argpartition(-self._scores, stop - 1)[:stop]
        bound = self._scores[top].min()
        chosen = np.flatnonzero(self._scores >= bound)
        order = np.lexsort((self._first[chosen], -self._scores[chosen]))
        self._order = chosen[order[:stop]]

    def slice(self, start: int, stop: int) -> tuple[list[int], list[float]]:
        """Keys and scores of the candidates ranked ``start`` to ``stop`` (exclusive)."""
        stop = min(stop, self._size)
        if stop > len(self._order):
            self._extend(max(stop, 2 * len(self._order)))
        picked = self._order[start:stop]
        return self._keys[picked].tolist(), self._scores[picked].tolist()

    def score_of(self, keys: Sequence[int | None]) -> list[float]:
        """Each key's score, 0 for keys that are not candidates (or None)."""
        if not len(self._keys):
            return [0.0] * len(keys)
        wanted = np.asarray([-1 if key is None else key for key in keys], dtype=np.int64)
        place = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        found = self._keys[place] == wanted
        result: list[float] = np.where(found, self._scores[place], 0.0).tolist()
        return result

    def contributions(self, keys: Sequence[int]) -> Iterator[tuple[int, int, float]]:
        """(key, history position, weighted score) of ``keys``' entries, in history order."""
        if not keys or not len(self.grouped):
            return iter(())
        selected = np.zeros(len(self.grouped), dtype=bool)
        selected[np.searchsorted(self.grouped, np.asarray(keys, dtype=np.int64))] = True
        mask = selected[self.entry_group]
        return zip(
            self.entry_keys[mask].tolist(),
            self.entry_owner[mask].tolist(),
            self.entry_value[mask].tolist(),
            strict=True,
        )


@lru_cache(maxsize=1024)
def _weights(n: int, half_life: float) -> np.ndarray:
    """Recency weights of positions 0..n-1 (read-only: shared between requests)."""
    weights = np.array([recency_weight(p, half_life) for p in range(n)], dtype=np.float64)
    weights.flags.writeable = False
    return weights


def section_shares(
    sections: Sequence[str | None], positions: Sequence[int], half_life: float
) -> dict[str, float]:
    """Section (case-folded) -> the reader's share of their known history in it, each item
    weighted by :func:`recency_weight` of its history position (shares add up to 1; empty
    when no item has a section)."""
    totals: dict[str, float] = {}
    for section, position in zip(sections, positions, strict=True):
        if section:
            key = section.casefold()
            totals[key] = totals.get(key, 0.0) + recency_weight(position, half_life)
    whole = sum(totals.values())
    return {key: value / whole for key, value in totals.items()} if whole else {}


def section_boosts(
    source: Source[M],
    lists: HistoryLists,
    popular: Sequence[tuple[str, float]],
    config: RankingConfig,
) -> np.ndarray | None:
    """Per popular article, ``1 + section_affinity x share(its section)`` (shares of the
    reader's known history, :func:`section_shares`); ``None`` when the affinity is off or
    there is nothing to boost. One :meth:`Source.sections` read for the history and the
    popular articles together."""
    if not config.section_affinity or not popular:
        return None
    known = [(p, key) for p, key in enumerate(lists.keys) if key is not None]
    popular_keys = [key for key in lists.extra[: len(popular)] if key is not None]
    if not known or not popular_keys:
        return None
    sections = source.sections([*(key for _, key in known), *popular_keys])
    shares = section_shares(sections[: len(known)], [p for p, _ in known], config.history_half_life)
    boosts = np.ones(len(popular))
    found = iter(sections[len(known) :])
    for i, key in enumerate(lists.extra[: len(popular)]):
        if key is not None and (section := next(found)):
            boosts[i] += config.section_affinity * shares.get(section.casefold(), 0.0)
    return boosts


def candidates(
    lists: HistoryLists,
    history: Sequence[str],
    popular: Sequence[tuple[str, float]],
    config: RankingConfig,
    boosts: np.ndarray | None = None,
) -> Candidates:
    """Score the union of the history's neighbour lists and the popular articles.

    ``rel(c)`` = sum over history items h_p listing c of ``w(p) * s(h_p, c)``, ``w(p)`` =
    :func:`recency_weight`; ``prior(c)`` = ``popularity_weight * pop(c) / max pop`` for the
    ``popular`` articles (id, popularity) found in the source, times ``boosts`` (aligned with
    ``popular``: :func:`section_boosts`) when given. ``np.bincount`` adds in history order, so
    each score is the very float a Python loop adding one term at a time gives. A request's
    arrays are ~1,000 long: numpy's per-call cost dominates, so the calls are few.
    """
    weights = _weights(len(history), config.history_half_life)
    owner = np.repeat(np.arange(len(history)), lists.counts)
    entry_keys = np.asarray(lists.neighbours)
    scores_in = lists.scores
    if len(scores_in) and scores_in.min() <= 0:  # stored scores are > 0 but for rare zeros
        positive = scores_in > 0
        entry_keys, owner, scores_in = entry_keys[positive], owner[positive], scores_in[positive]
    entry_value = weights[owner] * scores_in

    prior_keys = prior_values = np.zeros(0)
    if config.popularity_weight > 0 and popular:
        # The popular ids come first among the extra ids (score_candidates adds its own after).
        keys = np.array([-1 if key is None else key for key in lists.extra[: len(popular)]])
        counts = np.array([score for _, score in popular], dtype=np.float64)
        top = counts.max()
        usable = (keys >= 0) & (counts > 0)
        if top > 0 and usable.any():
            prior_keys = keys[usable]
            # The top article's count normalises before the boost: the boost moves articles of
            # the reader's sections up against the others, it does not rescale "most trending".
            prior_values = config.popularity_weight * counts[usable] / top
            if boosts is not None:
                prior_values = prior_values * boosts[usable]

    n_entries = len(entry_keys)
    all_keys = entry_keys.astype(np.int64)
    if len(prior_keys):
        all_keys = np.concatenate([all_keys, prior_keys.astype(np.int64)])
    grouped, first, inverse = np.unique(all_keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    scores = np.bincount(inverse[:n_entries], weights=entry_value, minlength=len(grouped))
    if len(prior_keys):
        # Added after the sum: without a prior every score is exactly the relevance.
        scores = scores + np.bincount(
            inverse[n_entries:], weights=prior_values, minlength=len(grouped)
        )
    keys, kept_first = grouped, first
    read_keys = np.asarray([key for key in lists.keys if key is not None], dtype=np.int64)
    if len(read_keys) and len(grouped):
        place = np.minimum(np.searchsorted(grouped, read_keys), len(grouped) - 1)
        keep = np.ones(len(grouped), dtype=bool)
        keep[place[grouped[place] == read_keys]] = False
        keys, scores, kept_first = grouped[keep], scores[keep], first[keep]
    entries = (all_keys[:n_entries], owner, entry_value, inverse[:n_entries], grouped)
    return Candidates(keys, scores, kept_first, config.max_candidates, entries)


def similarity_matrix(keys: Sequence[int], lists: Lists) -> list[list[float]]:
    """``sim[i][j]``: the stored score of ``keys[j]`` in ``keys[i]``'s list or the reverse
    (the larger), else 0 -- :func:`neighbour_similarity` for a whole pool at once."""
    n = len(keys)
    if n == 0:
        return []
    pool = np.asarray(keys, dtype=np.int64)
    sorter = np.argsort(pool)
    ordered = pool[sorter]
    found = np.asarray(lists.neighbours, dtype=np.int64)
    owner = np.repeat(np.arange(n), lists.counts)
    position = np.minimum(np.searchsorted(ordered, found), n - 1)
    hit = ordered[position] == found
    matrix = np.zeros((n, n))
    matrix[owner[hit], sorter[position[hit]]] = lists.scores[hit]
    result: list[list[float]] = np.maximum(matrix, matrix.T).tolist()
    return result


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


class ModelSource(Generic[M]):
    """A source over lookup functions by article id (embedded mode, evaluation, tests).

    Ids are given integer keys in the order first met, so ranking runs on the same arrays as
    with Redis row numbers.
    """

    def __init__(
        self,
        neighbours: Callable[[str], Sequence[tuple[str, float]] | None],
        describe: Callable[[Sequence[str]], Sequence[M | None]],
        known: Callable[[str], bool] | None = None,
    ) -> None:
        self._neighbours = neighbours
        self._describe = describe
        self._known = known or (lambda article_id: neighbours(article_id) is not None)
        self._ids: list[str] = []
        self._keys: dict[str, int] = {}

    def _key(self, article_id: str) -> int:
        key = self._keys.get(article_id)
        if key is None:
            key = self._keys[article_id] = len(self._ids)
            self._ids.append(article_id)
        return key

    def _arrays(self, found: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        keys = np.array([self._key(i) for i, _ in found], dtype=np.int64)
        return keys, np.array([score for _, score in found], dtype=np.float64)

    def history_lists(self, ids: Sequence[str], extra: Sequence[str] = ()) -> HistoryLists:
        """Each id's key and neighbour list (unknown ids: ``None``, 0 neighbours)."""
        keys: list[int | None] = []
        counts: list[int] = []
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for article_id in ids:
            found = self._neighbours(article_id)
            if found is None:
                keys.append(None)
                counts.append(0)
                continue
            keys.append(self._key(article_id))
            counts.append(len(found))
            parts.append(self._arrays(found))
        return HistoryLists(
            keys=keys,
            counts=counts,
            neighbours=np.concatenate([np.zeros(0, np.int64), *(p[0] for p in parts)]),
            scores=np.concatenate([np.zeros(0, np.float64), *(p[1] for p in parts)]),
            extra=[self._key(i) if self._known(i) else None for i in extra],
        )

    def neighbour_lists(self, keys: Sequence[int]) -> Lists:
        """Neighbour lists of known keys, concatenated."""
        found = [self._neighbours(self._ids[key]) or () for key in keys]
        flat = [pair for pairs in found for pair in pairs]
        return Lists([len(pairs) for pairs in found], *self._arrays(flat))

    def describe(self, keys: Sequence[int]) -> Sequence[M | None]:
        """Descriptions of keys."""
        return self._describe([self._ids[key] for key in keys])

    def sections(self, keys: Sequence[int]) -> list[str | None]:
        """Sections of keys (``None`` for an undescribed one)."""
        return [None if meta is None else meta.section for meta in self.describe(keys)]
