"""The app's one store: chosen from the config at start, then shared by every request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from flask import Flask, current_app

from service.store.base import ArticleMeta, Neighbour, RelatedRead, Store, VersionInfo
from service.store.local_store import LocalStore

log = logging.getLogger(__name__)

EXTENSION = "recs_store"


class ConfigError(RuntimeError):
    """The app cannot start with this configuration."""


# The live version is the one read every request needs. Caching it saves a store round trip
# per request, at the price of serving the previous version for up to ``ttl`` seconds after a
# publish or rollback (a version's data is immutable and old versions are kept, so the answers
# themselves stay consistent).
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

    def ping(self) -> bool:
        """Delegated (never cached: readiness must see the store as it is)."""
        return self.inner.ping()

    def close(self) -> None:
        """Delegated."""
        self.inner.close()


def redis_client(store: Store) -> redis.Redis | None:
    """The Redis client behind an app store, or ``None`` in embedded mode."""
    from service.store.redis_store import RedisStore

    inner = getattr(store, "inner", store)  # VersionCache wraps the real store
    return inner.client if isinstance(inner, RedisStore) else None


def get_store() -> Store:
    """The store of the current app."""
    store: Store = current_app.extensions[EXTENSION]
    return store


def create_store(app: Flask) -> Store:
    """A store from the config: ``STORE`` (an instance), else Redis, else a model directory."""
    config = app.config
    given = config.get("STORE")
    if given is not None:
        if not isinstance(given, Store):
            raise ConfigError(f"STORE must be a Store instance, got {type(given).__name__}")
        return given
    redis_url = config.get("REDIS_URL")
    model_dir = config.get("MODEL_DIR")
    if redis_url:
        if model_dir:
            log.warning("RECS_REDIS_URL is set: serving from Redis, ignoring RECS_MODEL_DIR")
        # Imported here so embedded mode never needs the Redis store's module.
        from service.breaker import CircuitBreaker
        from service.store.redis_store import RedisStore

        return RedisStore(
            str(redis_url),
            timeout=float(config.get("REDIS_TIMEOUT", 0.5)),
            meta_cache_size=int(config.get("META_CACHE_SIZE", 0)),
            breaker=CircuitBreaker(cooldown=float(config.get("BREAKER_COOLDOWN", 1.0))),
        )
    if model_dir:
        from models.artifact import ArtifactError, load_model

        try:
            return LocalStore(load_model(Path(model_dir)))
        except (ArtifactError, OSError) as exc:
            raise ConfigError(f"cannot load RECS_MODEL_DIR: {exc}") from exc
    raise ConfigError(
        "no data source: set RECS_REDIS_URL (serve from Redis) or RECS_MODEL_DIR"
        " (serve a model directory without Redis)"
    )


def init_app(app: Flask) -> None:
    """Create the store once, at start, so a bad config fails before the first request."""
    store = create_store(app)
    ttl = float(app.config["VERSION_TTL"])
    # A local store answers current_version() from memory: nothing to save there.
    if ttl > 0 and not isinstance(store, LocalStore):
        store = VersionCache(store, ttl)
    app.extensions[EXTENSION] = store
