"""Embedded mode: serve straight from a loaded model directory, no Redis.

The neighbour lists and metadata come from the model; reader events, histories and trending
live in process memory (service/store/memory.py) with the Redis store's semantics. Incremental
updates are the CLI's job here (``recs upsert --model DIR``, then a restart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from models.artifact import LoadedModel
from models.flags import flag_timestamp
from models.model import RelatedModel
from models.ranking import ModelSource
from models.records import Article, published_timestamp
from service.store.base import (
    EMPTY_RULES,
    ArticleMeta,
    HistorySettings,
    Neighbour,
    Reader,
    RuleSet,
    Store,
    UpdatesUnsupported,
    VersionInfo,
)
from service.store.memory import MemoryReaders
from service.store.trending import TrendingCache

if TYPE_CHECKING:
    from service.rules.file import RulesFile

NO_UPDATES = (
    "this server runs from a model directory: apply updates with `recs upsert --model DIR` /"
    " `recs delete ID --model DIR` and restart it, or serve from Redis (RECS_REDIS_URL) with a"
    " `recs worker` running"
)


def article_meta(model: RelatedModel, article: Article) -> ArticleMeta:
    """What the API serves of one article."""
    return ArticleMeta(
        id=article.id,
        title=article.title,
        url=article.url,
        section=article.section,
        published_at=article.published_at,
        image_url=article.image_url,
        tags=article.tags,
        tag_keys=tuple(model.tags_.tag_keys(article.tags)),
        no_recommend=article.no_recommend,
        sponsored=article.sponsored,
        embargo_until=flag_timestamp(article.embargo_until),
        expires_at=flag_timestamp(article.expires_at),
    )


class LocalStore(Store):
    """A read-only store over one in-memory model (the only version it knows)."""

    def __init__(self, loaded: LoadedModel, rules_file: RulesFile | None = None) -> None:
        """``rules_file``: the editorial rules (RECS_RULES_FILE); none without it. Rules are
        not written here: the base class's rule writes answer UpdatesUnsupported (501)."""
        self._rules_file = rules_file
        self._model = loaded.model
        manifest = loaded.manifest
        counts = manifest.get("counts", {})
        self._version = VersionInfo(
            version=loaded.version,
            built_at=str(manifest["created_at"]),
            published_at=None,
            articles=int(counts.get("articles", len(loaded.articles))),
            k=int(counts.get("k", self._model.neighbours_.shape[1])),
        )
        # Built once: per-request tag analysis would cost more than the lookup itself.
        self._meta = {a.id: article_meta(self._model, a) for a in loaded.articles}
        self._latest: dict[str | None, list[str]] = {}
        self._readers = MemoryReaders()
        self._trending = TrendingCache()

    def current_version(self) -> VersionInfo:
        """The loaded model's version."""
        return self._version

    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        """Stored neighbours of ``article_id``, best first; ``None`` if unknown."""
        if version != self._version.version or article_id not in self._model.index_:
            return None
        return [Neighbour(i, s) for i, s in self._model.neighbours(article_id)]

    def articles(self, version: str, ids: Sequence[str]) -> list[ArticleMeta | None]:
        """Metadata of ``ids`` in order (``None`` for unknown ids or another version)."""
        if version != self._version.version:
            return [None] * len(ids)
        return [self._meta.get(i) for i in ids]

    def ping(self) -> bool:
        """Always reachable: the model is in memory."""
        return True

    def latest(self, version: str, section: str | None, limit: int) -> list[str]:
        """Ids of the newest articles (optionally of one section), newest first, undated last."""
        if version != self._version.version or limit <= 0:
            return []
        wanted = section.casefold() if section else None
        if wanted not in self._latest:
            # Built once per section asked: same order as the Redis "latest" sorted sets.
            # Blank sections get no sorted set in Redis: not listed by section here either.
            metas = [
                m
                for m in self._meta.values()
                if wanted is None or (m.section.strip() and m.section.casefold() == wanted)
            ]
            if not metas:
                return []  # not cached: unknown sections asked by clients are unbounded
            # ZREVRANGE's order: time, then id, both descending.
            ranked = sorted(
                metas, key=lambda m: (published_timestamp(m.published_at), m.id), reverse=True
            )
            self._latest[wanted] = [m.id for m in ranked]
        return self._latest[wanted][:limit]

    def ranking_source(self, info: VersionInfo) -> ModelSource[ArticleMeta]:
        """Lookups by article id in the model."""
        return store_source(self, info.version)

    def record_event(
        self,
        version: str,
        article_id: str,
        reader: Reader | None,
        now: float,
        settings: HistorySettings,
    ) -> int:
        """In memory, as the Redis event script."""
        known = self.articles(version, [article_id])[0] is not None
        return self._readers.record(known, article_id, reader, now, settings)

    def reader_history(
        self, user_id: str, limit: int, now: float, settings: HistorySettings
    ) -> list[str]:
        """From memory."""
        return self._readers.history(user_id, limit, now)

    def erase_reader(self, user_id: str) -> None:
        """From memory."""
        self._readers.erase(user_id)

    def trending(self, now: float, settings: HistorySettings) -> list[tuple[str, float]]:
        """From memory, cached ``settings.cache_seconds`` per process as in Redis mode."""
        return self._trending.get(settings, lambda: self._readers.trending(now, settings))

    def enqueue_update(self, op: str, article_id: str, article: Any, *, by: str) -> str:
        """Refused: nothing here applies updates."""
        raise UpdatesUnsupported(NO_UPDATES)

    def writer_running(self) -> bool:
        """No writer serves a model directory."""
        return False

    def update_result(self, entry: str, timeout: float) -> Mapping[str, Any] | None:
        """Refused, as enqueue_update."""
        raise UpdatesUnsupported(NO_UPDATES)

    def drift(self, version: str, threshold: float) -> dict[str, Any] | None:
        """No incremental updates are applied to a served model directory."""
        return None

    def rules(self) -> RuleSet:
        """The rules file's rules, re-read when it changes (none without a file)."""
        return EMPTY_RULES if self._rules_file is None else self._rules_file.rules()

    def stored_rules(self) -> RuleSet:
        """The rules file as it is now."""
        return EMPTY_RULES if self._rules_file is None else self._rules_file.read_now()


def store_source(store: Store, version: str) -> ModelSource[ArticleMeta]:
    """A ranking source over any store, keyed by article id (one read per history item)."""

    def neighbours(article_id: str) -> list[tuple[str, float]] | None:
        found = store.neighbours(version, article_id)
        return None if found is None else [(n.id, n.score) for n in found]

    def known(article_id: str) -> bool:
        return store.articles(version, [article_id])[0] is not None

    return ModelSource(neighbours, lambda ids: store.articles(version, ids), known)
