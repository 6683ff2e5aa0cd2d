"""The one store interface the API reads and writes through, whatever holds the data.

:class:`Store` covers everything a route needs: the live version, related lists and metadata,
latest, a ranking source for "for you", reader events, histories and trending, the update
queue and drift. ``service.redis.store.RedisStore`` implements it on Redis,
``service.store.local.LocalStore`` on a model directory with events kept in memory, and
``service.store.cache.VersionCache`` wraps either. Routes never see a client and never ask
which store they have; tests/test_store_contract.py runs one suite against all three.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from models.ranking import Source
    from service.redis.breaker import CircuitBreaker

R = TypeVar("R")

# What Store.record_event returns.
UNKNOWN_ARTICLE = -1  # not in the version: nothing stored
NOT_COUNTED = 0  # stored in the history (if any), but the reader was already counted
COUNTED = 1


class StoreUnavailable(RuntimeError):
    """The backing store cannot be reached (the API answers 503 with Retry-After).

    ``failing_fast``: the call was not even tried (a circuit breaker is open after recent
    failures); the API does not log those one by one.
    """

    def __init__(self, message: str, *, failing_fast: bool = False) -> None:
        super().__init__(message)
        self.failing_fast = failing_fast


class UpdatesUnsupported(RuntimeError):
    """This store takes no writes: incremental updates or rule changes (a model directory:
    update it with the CLI, edit its rules file)."""


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
    # Article flags from the CMS (docs/editorial.md); the defaults let old versions decode.
    no_recommend: bool = False
    sponsored: bool = False
    embargo_until: float | None = None  # epoch seconds: not recommended before
    expires_at: float | None = None  # epoch seconds: not recommended from then on


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The editorial rules in force: every stored rule by id, and the rules counter."""

    seq: int  # bumped by every change; in ETags and cache keys
    rules: Mapping[str, Mapping[str, Any]]  # rule id -> stored rule (docs/editorial.md)


EMPTY_RULES = RuleSet(0, {})


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


@dataclass(frozen=True, slots=True)
class RuleChange:
    """What one rule write did: the counter after it and the rule before (``None``: new)."""

    seq: int
    before: Mapping[str, Any] | None


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
    def latest(self, version: str, section: str | None, limit: int) -> list[str]:
        """Ids of the newest articles (of one section, case-insensitive), newest first (ties by
        id, descending), undated last; at most ``limit`` (none for ``limit`` <= 0)."""

    @abstractmethod
    def ranking_source(self, info: VersionInfo) -> Source[ArticleMeta]:
        """What :func:`models.ranking.recommend` reads for one request on ``info``'s version."""

    # ------------------------------------------------------------------------- readers
    @abstractmethod
    def record_event(
        self,
        version: str,
        article_id: str,
        reader: Reader | None,
        now: float,
        settings: HistorySettings,
    ) -> int:
        """Record a view or click: :data:`UNKNOWN_ARTICLE` (nothing stored) for an id not in
        ``version``; else the event goes to a signed reader's history and counts for trending
        once per reader and article in the window (:data:`COUNTED`, else
        :data:`NOT_COUNTED`). Check and write are atomic."""

    @abstractmethod
    def reader_history(
        self, user_id: str, limit: int, now: float, settings: HistorySettings
    ) -> list[str]:
        """A signed reader's stored history, most recent first, at most ``limit`` (empty when
        none or expired)."""

    @abstractmethod
    def erase_reader(self, user_id: str) -> None:
        """Delete everything stored of a reader (history, trending record)."""

    @abstractmethod
    def trending(self, now: float, settings: HistorySettings) -> list[tuple[str, float]]:
        """Most read article ids in the window with their decayed reader counts, best first
        (ties by id), at most :data:`TRENDING_LIMIT`; may be cached ``settings.cache_seconds``."""

    # ------------------------------------------------------------------------- updates
    @abstractmethod
    def enqueue_update(self, op: str, article_id: str, article: Any, *, by: str) -> str:
        """Queue an upsert (``article``: a validated record) or a delete for the one writer;
        the queue entry's id. :class:`UpdatesUnsupported` where nothing can take updates."""

    @abstractmethod
    def writer_running(self) -> bool:
        """Whether the one update writer runs now (queued updates wait for it otherwise)."""

    @abstractmethod
    def update_result(self, entry: str, timeout: float) -> Mapping[str, Any] | None:
        """The writer's result of ``entry`` within ``timeout`` seconds, or ``None`` when it was
        not applied in time."""

    @abstractmethod
    def drift(self, version: str, threshold: float) -> dict[str, Any] | None:
        """Incremental updates of ``version`` since its build against ``threshold``
        (``None``: this store takes no updates)."""

    # ------------------------------------------------------------------------- rules
    def rules(self) -> RuleSet:
        """The editorial rules in force, possibly cached for a fraction of a second (the
        per-request read of service/rules/engine.py)."""
        return EMPTY_RULES

    def stored_rules(self) -> RuleSet:
        """The rules as stored now, bypassing any cache (admin reads, tests)."""
        return self.rules()

    def put_rule(self, rule: Mapping[str, Any]) -> RuleChange:
        """Create or replace ``rule`` (validated, with its server fields ``id``,
        ``updated_at``, ``updated_by``), bump the counter and log the change, atomically.
        :class:`UpdatesUnsupported` where rules cannot be written."""
        raise UpdatesUnsupported(NO_RULE_WRITES)

    def delete_rule(self, rule_id: str, *, by: str, at: str) -> RuleChange | None:
        """Delete a rule, bump the counter and log it atomically; ``None`` if it is unknown."""
        raise UpdatesUnsupported(NO_RULE_WRITES)

    def replace_rules(
        self, rules: Mapping[str, Mapping[str, Any]], *, by: str, at: str
    ) -> RulesReplaced:
        """Make ``rules`` (id -> validated body without server fields) the whole rule set in
        one transaction; unchanged rules keep their stored form, each change is logged."""
        raise UpdatesUnsupported(NO_RULE_WRITES)

    def rule_history(self, rule_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Logged changes of one rule (``None``: of every rule), newest first, at most
        ``limit``: ``{"seq", "op", "id", "by", "at", "before", "after"}``."""
        return []

    # ------------------------------------------------------------------------- operations
    @abstractmethod
    def ping(self) -> bool:
        """Whether the store answers at all."""

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Circuit breakers by the kind of work they guard (none for an in-process store)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections."""


NO_RULE_WRITES = (
    "this server cannot change rules: it runs from a model directory, whose rules are read"
    " from RECS_RULES_FILE (edit the file; it is re-read when it changes), or serve from Redis"
    " (RECS_REDIS_URL) and use the admin API or `recs rules`"
)


@dataclass(frozen=True, slots=True)
class RulesReplaced:
    """What an import did: rules added, changed, removed and left as they were."""

    seq: int
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]


# Trending ids kept per computation: enough to fill a box after section and read filters.
TRENDING_LIMIT = 500


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """Retention of histories, the trending window and its bounds (docs/security.md)."""

    ttl_seconds: int = 30 * 86_400
    max_items: int = 50
    window_hours: int = 24
    half_life_hours: float = 6.0
    cache_seconds: float = 10.0
    bucket_size: int = 2000  # articles kept per hourly bucket
    head: int = TRENDING_LIMIT  # best articles read from each bucket
    seen_max: int = 1000  # articles one reader is counted for in the window
    anonymous_weight: float = 0.5  # a client address's count; a signed reader's is 1


@dataclass(frozen=True, slots=True)
class Reader:
    """Who an event is from: ``kind`` ``u`` (a signed user id) or ``a`` (a client address)."""

    kind: str
    identity: str

    def weight(self, settings: HistorySettings) -> float:
        """How much this reader's first read of an article adds to trending."""
        return 1.0 if self.kind == "u" else settings.anonymous_weight
