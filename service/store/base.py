"""The one store interface the API reads through, whatever holds the data."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


class StoreUnavailable(RuntimeError):
    """The backing store cannot be reached (the API answers 503 with Retry-After)."""


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

    @abstractmethod
    def ping(self) -> bool:
        """Whether the store answers at all."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections."""
