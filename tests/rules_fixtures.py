"""Helpers of the editorial-rules tests: a real store serving a given rule set, a settable clock.

Until the rules storage is merged, a store's ``rules()`` is the empty set; :class:`RulesStore`
wraps a real store (a model directory or a published Redis version) and answers ``rules()``
with the set a test gives it, bumping the seq on each change as the stored rules do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import Flask

from service import create_app
from service.store.base import RuleSet, Store
from service.store.cache import VersionCache
from tests.service_fixtures import NOW


class RulesStore(VersionCache):
    """A real store (no caching: ttl 0) whose rule set the test sets."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner, ttl=0)
        self.ruleset = RuleSet(0, {})

    def set_rules(self, rules: Mapping[str, Mapping[str, Any]]) -> RuleSet:
        """Replace every rule (ids added as the store adds them); bumps the seq."""
        stored = {rule_id: {**body, "id": rule_id} for rule_id, body in rules.items()}
        self.ruleset = RuleSet(self.ruleset.seq + 1, stored)
        return self.ruleset

    def rules(self) -> RuleSet:
        """The rule set the test gave."""
        return self.ruleset


@dataclasses.dataclass
class Clock:
    """A settable "now" for the app's ``CLOCK``."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def rules_app(store: Store, clock: Clock | None = None, **config: Any) -> Flask:
    """An app on ``store`` with the clock given (the tests' fixed NOW by default)."""
    settings: dict[str, Any] = {
        "TESTING": True,
        "STORE": store,
        "CLOCK": clock or Clock(),
        "TRENDING_CACHE_SECONDS": 0,
        "EVENTS_RATE_LIMIT": "off",
        "RECOMMENDATIONS_RATE_LIMIT": "off",
    }
    settings.update(config)
    return create_app(settings)


def iso(moment: datetime) -> str:
    """A time as a rule stores it (UTC, ``Z``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
