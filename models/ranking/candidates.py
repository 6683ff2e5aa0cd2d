"""Candidates of one history: relevance from its neighbour lists plus the popularity prior."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np

from models.ranking.config import RankingConfig
from models.ranking.source import HistoryLists, M, Source


def recency_weight(position: int, half_life: float) -> float:
    """Weight of the history item at ``position`` (0 = most recently read)."""
    return float(0.5 ** (position / half_life))


class Candidates:
    """Relevance of one history's candidates (step 1 of ranking: :mod:`~models.ranking.recommend`).

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
