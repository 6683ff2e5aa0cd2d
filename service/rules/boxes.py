"""The routes' side of the engine: the compiled rules of the app's store, the clock, pins."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app

from service.rules.compiled import CompiledRules
from service.rules.engine import Box, RulesCompiler, pin_ids
from service.store.base import ArticleMeta, Store

EXTENSION = "recs_rules_compiler"


def compiled_rules(store: Store) -> CompiledRules:
    """The store's rules, compiled once per rules seq per process."""
    compiler: RulesCompiler | None = current_app.extensions.get(EXTENSION)
    if compiler is None:  # the first request of this app (setdefault: one wins a race)
        compiler = current_app.extensions.setdefault(EXTENSION, RulesCompiler())
    return compiler.get(store.rules())


def now_epoch() -> float:
    """The app clock (``CLOCK``, injectable in tests) as epoch seconds (naive means UTC)."""
    value: datetime = current_app.config["CLOCK"]()
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def pinned_metas(store: Store, version: str, box: Box) -> dict[str, ArticleMeta | None]:
    """Metadata of the box's pinned ids: one store read, and only when something is pinned."""
    ids = pin_ids(box)
    if not ids:
        return {}
    return dict(zip(ids, store.articles(version, ids), strict=True))
