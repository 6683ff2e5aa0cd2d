"""The one store interface the API reads through, whatever holds the data."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

R = TypeVar("R")


class StoreUnavailable(RuntimeError):
    """The backing store cannot be reached (the API answers 503 with Retry-After)."""


class NoLiveVersion(StoreUnavailable):
    """The store answers but holds no published version (never published, or a Redis that
    restarted empty): like an outage, remembered answers are served marked stale."""


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One stored neighbour of an article."""

    id: str
    score: float


@dataclass(frozen=True, slots=True)
class ArticleMeta:
    """What a widget shows of an article, plus its normalised tag keys.

    ``tags`` are the display tags as given; ``tag_keys`` are the normalised, alias-resolved
    tags that carry weight in the model, most specific (highest IDF) first, aligned with
    nothing: use them to compute shared tags between two articles.
    """

    id: str
    title: str
    url: str
    section: str
    published_at: str | None
    image_url: str
    tags: tuple[str, ...]
    tag_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A published model version."""

    version: str
    built_at: str  # ISO-8601 UTC, when the model was trained
    published_at: str | None  # ISO-8601 UTC, when it was made current (None in embedded mode)
    articles: int
    k: int
    # Incremental updates applied to this version since it was published (each one bumps it):
    # part of every cache key and ETag, since a version's lists are no longer frozen.
    seq: int = 0


class LazyMetas(Sequence[ArticleMeta | None], Generic[R]):
    """Metadata decoded on first access: a reader that stops after k items decodes about k."""

    __slots__ = ("_raw", "_decode", "_done")

    def __init__(self, raw: Sequence[R], decode: Callable[[R], ArticleMeta | None]) -> None:
        self._raw = raw
        self._decode = decode
        self._done: list[ArticleMeta | None | bool] = [False] * len(raw)  # False: not yet

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> ArticleMeta | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[ArticleMeta | None]: ...

    def __getitem__(self, index: int | slice) -> ArticleMeta | None | list[ArticleMeta | None]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        value = self._done[index]
        if value is False:
            value = self._done[index] = self._decode(self._raw[index])
        return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class RelatedRead:
    """An article's metadata and its stored neighbours with theirs, as one read returns them.

    ``metas[i]`` belongs to ``neighbours[i]`` (``None``: no metadata stored) and may be decoded
    only when indexed. ``complete`` is False when a ``limit`` left later neighbours out.
    """

    source: ArticleMeta | None
    neighbours: Sequence[Neighbour]
    metas: Sequence[ArticleMeta | None]
    complete: bool


class Store(ABC):
    """Read side of the neighbour cache. Every method may raise :class:`StoreUnavailable`."""

    @abstractmethod
    def current_version(self) -> VersionInfo | None:
        """The live version, or ``None`` when nothing is published."""

    @abstractmethod
    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        """Stored neighbours of an article in ``version``, best first; ``None`` if unknown."""

    @abstractmethod
    def articles(self, version: str, ids: Sequence[str]) -> list[ArticleMeta | None]:
        """Metadata of several articles in ``version`` (``None`` for unknown ids), in order."""

    def related_articles(
        self, version: str, article_id: str, limit: int | None = None
    ) -> RelatedRead | None:
        """An article's metadata and neighbours with theirs; ``None`` if the id is unknown.

        ``limit``: only the first ``limit`` stored neighbours are needed (``None``: all). This
        default composes :meth:`neighbours` and :meth:`articles`; a remote store overrides it
        with a single round trip.
        """
        neighbours = self.neighbours(version, article_id)
        if neighbours is None:
            return None
        wanted = neighbours if limit is None else neighbours[:limit]
        metas = self.articles(version, [article_id, *(n.id for n in wanted)])
        return RelatedRead(metas[0], wanted, metas[1:], len(wanted) == len(neighbours))

    @abstractmethod
    def ping(self) -> bool:
        """Whether the store answers at all."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections."""
