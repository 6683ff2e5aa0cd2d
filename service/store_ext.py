"""The app's one store: chosen from the config at start, then shared by every request.

Redis mode imports the Redis package only; embedded mode imports the model code it needs to
read a model directory. Neither is imported before the config says which one it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, current_app

from service.settings import ConfigError
from service.store.base import Store
from service.store.cache import VersionCache

log = logging.getLogger(__name__)

EXTENSION = "recs_store"
# Seconds each kind of "for you" Redis work may take (its own pool and circuit breaker).
BUDGETS = {
    "history": "HISTORY_REDIS_TIMEOUT",
    "trending": "TRENDING_REDIS_TIMEOUT",
    "events": "EVENTS_REDIS_TIMEOUT",
}


def get_store() -> Store:
    """The store of the current app."""
    store: Store = current_app.extensions[EXTENSION]
    return store


def _seconds(config: object, name: str) -> float:
    value = config[name]  # type: ignore[index]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= 60:
        raise ConfigError(f"{name} (env RECS_{name}) must be 0.01 to 60 seconds")
    return float(value)


def _count(config: object, name: str) -> int:
    value = config[name]  # type: ignore[index]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
        raise ConfigError(f"{name} (env RECS_{name}) must be an integer from 0 to 10000000")
    return value


def create_store(app: Flask) -> Store:
    """A store from the config: ``STORE`` (an instance), else Redis, else a model directory."""
    config = app.config
    given = config.get("STORE")
    rules_file = config.get("RULES_FILE")
    if rules_file and (given is not None or config.get("REDIS_URL")):
        raise ConfigError(
            "RULES_FILE (env RECS_RULES_FILE) is for a model directory (RECS_MODEL_DIR) only:"
            " with Redis, load a rules file with `recs rules import FILE`"
        )
    if given is not None:
        if not isinstance(given, Store):
            raise ConfigError(f"STORE must be a Store instance, got {type(given).__name__}")
        return given
    redis_url = config.get("REDIS_URL")
    model_dir = config.get("MODEL_DIR")
    if redis_url:
        if model_dir:
            log.info(
                "serving from Redis (RECS_REDIS_URL); RECS_MODEL_DIR is read only for the demo"
                " pages' article bodies"
            )
        # Imported here so embedded mode never needs the Redis package.
        from service.redis.breaker import CircuitBreaker
        from service.redis.store import RedisStore

        cooldown = float(config["BREAKER_COOLDOWN"])
        return RedisStore(
            str(redis_url),
            timeout=float(config["REDIS_TIMEOUT"]),
            meta_cache_size=_count(config, "META_CACHE_SIZE"),
            row_cache_size=_count(config, "ROW_CACHE_SIZE"),
            breaker=CircuitBreaker(cooldown=cooldown),
            budgets={kind: _seconds(config, name) for kind, name in BUDGETS.items()},
            breaker_cooldown=cooldown,
            rules_ttl=float(config["RULES_TTL"]),
        )
    if model_dir:
        # The model code (scikit-learn, scipy) loads here, in embedded mode only.
        from models.artifact import ArtifactError, load_model
        from service.rules.file import RulesFile, RulesFileError
        from service.store.local import LocalStore

        try:
            rules = None
            if rules_file:
                rules = RulesFile(
                    str(rules_file), max_k=int(config["MAX_K"]), ttl=float(config["RULES_TTL"])
                )
        except RulesFileError as exc:
            raise ConfigError(f"RECS_RULES_FILE: {exc}") from None
        try:
            return LocalStore(load_model(Path(model_dir)), rules)
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
    # An in-process store answers current_version() from memory: nothing to save there.
    if ttl > 0 and store.breakers():
        store = VersionCache(store, ttl)
    app.extensions[EXTENSION] = store
