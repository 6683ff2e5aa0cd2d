"""The routes' side of the engine: the compiled rules of the app's store, the clock, pins."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime

from flask import current_app

from service.rules.compiled import CompiledRules
from service.rules.engine import Box, RulesCompiler, box_for, pin_ids, still_allowed
from service.store.base import ArticleMeta, Store, StoreUnavailable
from service.store_ext import get_store

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


def recheck(
    shown: list[tuple[ArticleMeta, bool]],
    *,
    article_id: str | None = None,
    sections: Iterable[str | None] = (),
    blocked: Collection[str] = (),
) -> Callable[[], bool]:
    """A check for the stale cache (service/resilience.py): whether an answer showing ``shown``
    (``(meta, pinned)``) is still allowed by the rules this process holds now, at the clock's
    now. A takedown, a rule window or an expiry reached after the answer was remembered must
    not come back through an outage."""
    sections = tuple(sections)
    blocked = frozenset(blocked)

    def check() -> bool:
        try:
            # While Redis fails, the rules cache answers with the last set it read.
            compiled = compiled_rules(get_store())
        except StoreUnavailable:
            return not shown
        box = box_for(
            compiled, now=now_epoch(), article_id=article_id, sections=sections, blocked=blocked
        )
        return still_allowed(box, shown)

    return check
