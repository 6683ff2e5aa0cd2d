"""A store wrapper that remembers the live version for a fraction of a second.

The live version is the one read every request needs. Caching it saves a store round trip per
request, at the price of serving the previous version for up to ``ttl`` seconds after a
publish or rollback (a version's data is immutable and old versions are kept, so the answers
themselves stay consistent). Every other call goes straight to the wrapped store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.store.base import (
    ArticleMeta,
    HistorySettings,
    Neighbour,
    Reader,
    RelatedRead,
    RuleChange,
    RuleSet,
    RulesReplaced,
    Store,
    VersionInfo,
)

if TYPE_CHECKING:
    from models.ranking import Source
    from service.redis.breaker import CircuitBreaker


class VersionCache(Store):
    """Remembers the live version for ``ttl`` seconds; every other call goes to ``inner``."""

    def __init__(
        self, inner: Store, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: VersionInfo | None = None
        self._expires = float("-inf")

    def current_version(self) -> VersionInfo | None:
        """The live version, from the store at most once per ``ttl``."""
        now = self._clock()
        if now < self._expires:
            return self._value
        value = self.inner.current_version()
        # "Nothing published" is not cached: the first publish should be seen at once.
        with self._lock:
            self._value, self._expires = value, (now + self.ttl if value else float("-inf"))
        return value

    # Everything below is delegated as it is.
    def neighbours(self, version: str, article_id: str) -> list[Neighbour] | None:
        """Delegated."""
        return self.inner.neighbours(version, article_id)

    def articles(self, version: str, ids: Sequence[str]) -> list[ArticleMeta | None]:
        """Delegated."""
        return self.inner.articles(version, ids)

    def related_articles(
        self, version: str, article_id: str, limit: int | None = None
    ) -> RelatedRead | None:
        """Delegated (the inherited default would split it into two round trips)."""
        return self.inner.related_articles(version, article_id, limit)

    def latest(self, version: str, section: str | None, limit: int) -> list[str]:
        """Delegated."""
        return self.inner.latest(version, section, limit)

    def ranking_source(self, info: VersionInfo) -> Source[ArticleMeta]:
        """Delegated."""
        return self.inner.ranking_source(info)

    def record_event(
        self,
        version: str,
        article_id: str,
        reader: Reader | None,
        now: float,
        settings: HistorySettings,
    ) -> int:
        """Delegated."""
        return self.inner.record_event(version, article_id, reader, now, settings)

    def reader_history(
        self, user_id: str, limit: int, now: float, settings: HistorySettings
    ) -> list[str]:
        """Delegated."""
        return self.inner.reader_history(user_id, limit, now, settings)

    def erase_reader(self, user_id: str) -> None:
        """Delegated."""
        self.inner.erase_reader(user_id)

    def trending(self, now: float, settings: HistorySettings) -> list[tuple[str, float]]:
        """Delegated."""
        return self.inner.trending(now, settings)

    def enqueue_update(self, op: str, article_id: str, article: Any, *, by: str) -> str:
        """Delegated."""
        return self.inner.enqueue_update(op, article_id, article, by=by)

    def writer_running(self) -> bool:
        """Delegated."""
        return self.inner.writer_running()

    def update_result(self, entry: str, timeout: float) -> Mapping[str, Any] | None:
        """Delegated."""
        return self.inner.update_result(entry, timeout)

    def drift(self, version: str, threshold: float) -> dict[str, Any] | None:
        """Delegated."""
        return self.inner.drift(version, threshold)

    def rules(self) -> RuleSet:
        """Delegated: the inner store keeps its own short cache of the rules
        (service/store/rules_cache.py), checked on the rules counter, not the version."""
        return self.inner.rules()

    def stored_rules(self) -> RuleSet:
        """Delegated (never cached: admin reads see the store as it is)."""
        return self.inner.stored_rules()

    def put_rule(self, rule: Mapping[str, Any]) -> RuleChange:
        """Delegated."""
        return self.inner.put_rule(rule)

    def delete_rule(self, rule_id: str, *, by: str, at: str) -> RuleChange | None:
        """Delegated."""
        return self.inner.delete_rule(rule_id, by=by, at=at)

    def replace_rules(
        self, rules: Mapping[str, Mapping[str, Any]], *, by: str, at: str
    ) -> RulesReplaced:
        """Delegated."""
        return self.inner.replace_rules(rules, by=by, at=at)

    def rule_history(self, rule_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Delegated."""
        return self.inner.rule_history(rule_id, limit)

    def ping(self) -> bool:
        """Delegated (never cached: readiness must see the store as it is)."""
        return self.inner.ping()

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Delegated."""
        return self.inner.breakers()

    def close(self) -> None:
        """Delegated."""
        self.inner.close()
