"""A rule set compiled once per rules ``seq``: rules indexed by scope, times as epoch seconds,
tags and sections folded, and the merged rules of a box cached per validity window.

The engine (service/rules/engine.py) asks :meth:`CompiledRules.box` for the rules in force in
one box at one instant; that costs a dict lookup per scope and a bisect, whatever the number of
rules, because site-wide and section rules are merged once per window between two rule
boundaries (a ``valid_from`` or ``valid_until``).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.tagnorm import fold_tag
from service.rules.schema import parse_time
from service.store.base import RuleSet

log = logging.getLogger(__name__)

# Scope ranks: equal pin positions go article scope first, then section, then site-wide.
ARTICLE, SECTION, SITE = 0, 1, 2
_DAY = 86_400.0
# Merged (section, window) boxes kept per compiled set: sections are editor-chosen, few.
_MERGED_LIMIT = 4096


def fold_section(section: str) -> str:
    """A section as rules, articles and the ``section`` filter compare it."""
    return section.strip().casefold()


def _epoch(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return parse_time(str(value)).timestamp()


@dataclass(frozen=True, slots=True)
class Rule:
    """One stored rule, compiled."""

    id: str
    rank: int  # ARTICLE, SECTION or SITE
    hide: frozenset[str] = frozenset()
    hide_tags: frozenset[str] = frozenset()
    hide_sections: frozenset[str] = frozenset()
    pins: tuple[tuple[str, int], ...] = ()
    max_age_days: float | None = None
    hide_box: bool = False
    start: float | None = None  # valid_from, inclusive
    end: float | None = None  # valid_until, exclusive

    def active(self, now: float) -> bool:
        """Whether the rule is in force at ``now`` (to the second, as its times are)."""
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


def compile_rule(rule_id: str, body: Mapping[str, Any]) -> tuple[Rule, str | None]:
    """A stored rule as a :class:`Rule` and its scope key (article id or folded section)."""
    scope = body.get("scope") or {}
    if scope.get("article_id"):
        rank, key = ARTICLE, str(scope["article_id"])
    elif scope.get("section"):
        rank, key = SECTION, fold_section(str(scope["section"]))
    else:
        rank, key = SITE, None
    max_age = body.get("max_age_days")
    return (
        Rule(
            id=rule_id,
            rank=rank,
            hide=frozenset(body.get("hide") or ()),
            hide_tags=frozenset(fold_tag(t) for t in body.get("hide_tags") or ()),
            hide_sections=frozenset(fold_section(s) for s in body.get("hide_sections") or ()),
            pins=tuple((str(p["id"]), int(p.get("position", 0))) for p in body.get("pin") or ()),
            max_age_days=None if max_age is None else float(max_age),
            hide_box=bool(body.get("hide_box")),
            start=_epoch(body.get("valid_from")),
            end=_epoch(body.get("valid_until")),
        ),
        key,
    )


@dataclass(frozen=True, slots=True)
class Merged:
    """The rules of one scope in force over one window, merged."""

    hide: frozenset[str] = frozenset()
    hide_tags: frozenset[str] = frozenset()
    hide_sections: frozenset[str] = frozenset()
    # (position, rank, rule id, order in the rule, article id): sorts into pin precedence.
    pins: tuple[tuple[int, int, str, int, str], ...] = ()
    max_age_days: float | None = None
    hide_box: str | None = None  # the id of a hide_box rule in force
    rules: tuple[str, ...] = ()  # ids of the rules merged

    @property
    def empty(self) -> bool:
        return not self.rules


NOTHING = Merged()


def merge(rules: list[Rule], now: float) -> Merged:
    """The rules of ``rules`` active at ``now`` as one :class:`Merged`."""
    active = [r for r in rules if r.active(now)]
    if not active:
        return NOTHING
    ages = [r.max_age_days for r in active if r.max_age_days is not None]
    boxes = sorted(r.id for r in active if r.hide_box)
    return Merged(
        hide=frozenset().union(*(r.hide for r in active)),
        hide_tags=frozenset().union(*(r.hide_tags for r in active)),
        hide_sections=frozenset().union(*(r.hide_sections for r in active)),
        pins=tuple(
            sorted(
                (position, r.rank, r.id, order, pin_id)
                for r in active
                for order, (pin_id, position) in enumerate(r.pins)
            )
        ),
        max_age_days=min(ages) if ages else None,  # the strictest wins
        hide_box=boxes[0] if boxes else None,
        rules=tuple(sorted(r.id for r in active)),
    )


@dataclass
class CompiledRules:
    """A :class:`RuleSet` indexed by scope, with the instants at which any rule starts or ends."""

    seq: int
    by_article: dict[str, list[Rule]] = field(default_factory=dict)
    by_section: dict[str, list[Rule]] = field(default_factory=dict)
    site: list[Rule] = field(default_factory=list)
    boundaries: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # rules that could not be compiled
    source: Any = None  # the rules mapping compiled (for sets that never bump seq)
    _merged: dict[tuple[str | None, int], Merged] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def empty(self) -> bool:
        return not (self.by_article or self.by_section or self.site)

    def window(self, now: float) -> tuple[int, float]:
        """The index of the window holding ``now`` and the instant it ends (``inf``: never)."""
        index = bisect.bisect_right(self.boundaries, now)
        end = self.boundaries[index] if index < len(self.boundaries) else float("inf")
        return index, end

    def scoped(self, section: str | None, window: int, now: float) -> Merged:
        """Site-wide rules (``section`` None) or one section's, merged for a window."""
        key = (section, window)
        found = self._merged.get(key)
        if found is None:
            rules = self.site if section is None else self.by_section.get(section, [])
            found = merge(rules, now) if rules else NOTHING
            with self._lock:
                if len(self._merged) >= _MERGED_LIMIT:
                    self._merged.clear()
                self._merged[key] = found
        return found


def compile_rules(ruleset: RuleSet) -> CompiledRules:
    """Index a rule set; a rule that cannot be read is skipped (and logged), never fatal."""
    out = CompiledRules(seq=ruleset.seq, source=ruleset.rules)
    instants: set[float] = set()
    for rule_id in sorted(ruleset.rules):
        try:
            rule, key = compile_rule(rule_id, ruleset.rules[rule_id])
        except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
            # Stored rules were validated; one that still fails must not take the API down.
            log.warning("editorial rule %r skipped: %s", rule_id, exc)
            out.skipped.append(rule_id)
            continue
        if rule.start is not None:
            instants.add(rule.start)
        if rule.end is not None:
            instants.add(rule.end)
        if rule.rank == ARTICLE:
            out.by_article.setdefault(str(key), []).append(rule)
        elif rule.rank == SECTION:
            out.by_section.setdefault(str(key), []).append(rule)
        else:
            out.site.append(rule)
    out.boundaries = sorted(instants)
    return out


class RulesCompiler:
    """Compiles the store's rule set once per ``seq`` (shared by a process's requests)."""

    def __init__(self) -> None:
        self._compiled = compile_rules(RuleSet(0, {}))
        self._lock = threading.Lock()

    def get(self, ruleset: RuleSet) -> CompiledRules:
        """The compiled form of ``ruleset`` (recompiled only when its seq changes)."""
        compiled = self._compiled
        # seq 0 is "never changed": a set that stays there (a test's, a file's) is compared by
        # identity, so it is still compiled once per object, not once per request.
        if compiled.seq != ruleset.seq or (
            ruleset.seq == 0 and compiled.source is not ruleset.rules
        ):
            compiled = compile_rules(ruleset)
            with self._lock:
                self._compiled = compiled
        return compiled


def day_seconds(days: float) -> float:
    """``max_age_days`` in seconds."""
    return days * _DAY
