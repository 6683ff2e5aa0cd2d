"""Where ranking reads from: the :class:`Source` protocol, its arrays, and :class:`ModelSource`.

A source hands out neighbour lists and article descriptions by integer key (Redis: row
numbers), so the same ranking code runs over Redis, a store, or a model directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

import numpy as np

M = TypeVar("M", bound="Described")
M_co = TypeVar("M_co", bound="Described", covariant=True)


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
