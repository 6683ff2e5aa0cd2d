"""Applying editorial rules and article flags to one box at request time (docs/editorial.md).

A route hands over its candidates in ranked order (stored neighbours, then its fallbacks) as
``(meta, payload)`` pairs, lazily; :func:`arrange` keeps the allowed ones until the box is
full, puts the pinned items at their positions and says until when the answer stays right.
Each candidate costs a few set lookups: the rules themselves were compiled once per rules
``seq`` (service/rules/compiled.py) and merged once per scope and validity window.

Precedence: anything hidden (a rule's ``hide``/``hide_tags``/``hide_sections``, the flags
``no_recommend``, an embargo not yet over, an expiry reached, the request's ``exclude``, the
box's own article) is never shown, pinned or not; a ``sponsored`` article is shown only when
pinned; ``hide_box`` empties the box; the strictest ``max_age_days`` wins; equal pin positions
go article scope, section scope, site-wide, then rule id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from models.tagnorm import fold_tag
from models.times import published_timestamp
from service.rules.compiled import (
    NOTHING,
    CompiledRules,
    Merged,
    RulesCompiler,
    day_seconds,
    fold_section,
    merge,
)
from service.store.base import ArticleMeta

P = TypeVar("P")

# The reason an emptied box gives (the widget hides a box that answers it).
HIDE_BOX_REASON = "hide_box"

__all__ = [
    "HIDE_BOX_REASON",
    "Arranged",
    "Box",
    "RulesCompiler",
    "arrange",
    "box_for",
    "still_allowed",
]


@dataclass(frozen=True, slots=True)
class Box:
    """What is in force in one box at one instant: merged rules, the blocked ids, the clock."""

    now: float
    seq: int
    blocked: frozenset[str]  # the request's exclude and the box's own article
    parts: tuple[Merged, ...]  # the non-empty merged scopes (article, section, site)
    max_age_days: float | None
    hide_box: str | None  # id of the rule that empties the box
    pins: tuple[tuple[int, int, str, int, str], ...]  # merged pin precedence order
    fresh_until: float  # the next instant a rule starts or ends


def box_for(
    compiled: CompiledRules,
    *,
    now: float,
    article_id: str | None = None,
    sections: Iterable[str | None] = (),
    blocked: Collection[str] = (),
) -> Box:
    """The rules in force for a box of ``article_id`` (its related box; ``None`` elsewhere) in
    ``sections`` (the article's section and/or the requested one) at ``now`` (epoch s)."""
    window, fresh_until = compiled.window(now)
    parts: list[Merged] = []
    if article_id is not None and article_id in compiled.by_article:
        # Article rules are few per article: merged per request, not cached.
        parts.append(merge(compiled.by_article[article_id], now))
    for section in dict.fromkeys(fold_section(s) for s in sections if s):
        if section and section in compiled.by_section:
            parts.append(compiled.scoped(section, window, now))
    if compiled.site:
        parts.append(compiled.scoped(None, window, now))
    parts = [part for part in parts if part is not NOTHING and not part.empty]
    ages = [p.max_age_days for p in parts if p.max_age_days is not None]
    boxes = [p.hide_box for p in parts if p.hide_box is not None]
    pins = tuple(sorted(pin for part in parts for pin in part.pins)) if parts else ()
    return Box(
        now=now,
        seq=compiled.seq,
        blocked=frozenset(blocked),
        parts=tuple(parts),
        max_age_days=min(ages) if ages else None,
        hide_box=min(boxes) if boxes else None,
        pins=pins,
        fresh_until=fresh_until,
    )


@dataclass(slots=True)
class Placed(Generic[P]):
    """One shown item: its article, the route's payload (``None`` for a pin from outside the
    candidates) and whether a pin put it there."""

    meta: ArticleMeta
    payload: P | None
    pinned: bool


@dataclass(slots=True)
class Arranged(Generic[P]):
    """A box's answer: its items, why it is empty (``hide_box``), and until when it holds."""

    items: list[Placed[P]] = field(default_factory=list)
    reason: str | None = None
    fresh_until: float = float("inf")


class _Judge:
    """Decides, candidate by candidate, what a box may show; notes when a decision expires."""

    __slots__ = ("box", "cutoff", "age", "fresh_until", "hides", "tags", "sections")

    def __init__(self, box: Box) -> None:
        self.box = box
        self.age = None if box.max_age_days is None else day_seconds(box.max_age_days)
        self.cutoff = None if self.age is None else box.now - self.age
        self.fresh_until = box.fresh_until
        # Only the non-empty sets: most boxes check one or two, not one per scope.
        self.hides = [p.hide for p in box.parts if p.hide]
        self.tags = [p.hide_tags for p in box.parts if p.hide_tags]
        self.sections = [p.hide_sections for p in box.parts if p.hide_sections]

    def hidden(self, meta: ArticleMeta) -> bool:
        """Whether anything hides ``meta`` (pins included): rules, flags, exclude, itself."""
        if meta.id in self.box.blocked or meta.no_recommend:
            return True
        now = self.box.now
        if meta.embargo_until is not None:
            if now < meta.embargo_until:
                self.fresh_until = min(self.fresh_until, meta.embargo_until)
                return True
        if meta.expires_at is not None:
            if now >= meta.expires_at:
                return True
            self.fresh_until = min(self.fresh_until, meta.expires_at)
        if any(meta.id in ids for ids in self.hides):
            return True
        if self.sections and meta.section:
            section = fold_section(meta.section)
            if any(section in s for s in self.sections):
                return True
        if self.tags and (meta.tags or meta.tag_keys):
            keys = {fold_tag(t) for t in meta.tags}
            keys.update(meta.tag_keys)
            if any(not keys.isdisjoint(t) for t in self.tags):
                return True
        return False

    def organic(self, meta: ArticleMeta) -> bool:
        """Whether ``meta`` may be shown unpinned: not hidden, not sponsored, not too old."""
        if meta.sponsored or self.hidden(meta):
            return False
        if self.cutoff is not None and self.age is not None:
            published = published_timestamp(meta.published_at)
            # Undated articles cannot be shown to be recent enough.
            if published < self.cutoff:
                return False
            self.fresh_until = min(self.fresh_until, published + self.age)
        return True


def arrange(
    box: Box,
    candidates: Iterable[tuple[ArticleMeta | None, P]],
    k: int,
    pin_metas: Mapping[str, ArticleMeta | None] | None = None,
    more: Callable[[], Iterable[tuple[ArticleMeta | None, P]]] | None = None,
) -> Arranged[P]:
    """The box's ``k`` items: allowed candidates in order, pins at their positions.

    ``pin_metas``: metadata of :func:`pin_ids` (unknown ids map to ``None`` and are skipped).
    ``more``: further candidates (the route's fallbacks), read only if the first run short.
    """
    if box.hide_box is not None:
        return Arranged([], HIDE_BOX_REASON, box.fresh_until)
    judge = _Judge(box)
    pins: list[tuple[int, ArticleMeta]] = []
    taken: set[str] = set()
    for position, _rank, _rule, _order, pin_id in box.pins:
        if len(pins) == k:
            break
        meta = (pin_metas or {}).get(pin_id)
        if pin_id in taken or meta is None or judge.hidden(meta):
            continue  # unknown, repeated, or hidden: hide beats pin
        taken.add(pin_id)
        pins.append((position, meta))
    wanted = k - len(pins)
    organic: list[Placed[P]] = []

    def runs() -> Iterator[Iterable[tuple[ArticleMeta | None, P]]]:
        yield candidates
        if more is not None and len(organic) < wanted:
            yield more()  # only now: the fallbacks may cost store reads

    for source in runs():
        for meta, payload in source:
            if len(organic) >= wanted:
                break
            if meta is None or meta.id in taken or not judge.organic(meta):
                continue
            taken.add(meta.id)
            organic.append(Placed(meta, payload, False))
    items = organic
    target = -1
    for position, meta in pins:
        # In precedence order: a pin whose position an earlier pin took goes right after it;
        # one beyond the list goes last.
        target = max(position, target + 1)
        items.insert(min(target, len(items)), Placed(meta, None, True))
    return Arranged(items, None, judge.fresh_until)


def still_allowed(box: Box, shown: Iterable[tuple[ArticleMeta, bool]]) -> bool:
    """Whether a box may still show every ``(meta, pinned)`` of an answer made earlier (under
    other rules or at another instant): pinned items must still be pinned and not hidden,
    the others organic. New pins are not asked for: an old answer lacking one is not wrong."""
    if box.hide_box is not None:
        return not any(True for _ in shown)
    judge = _Judge(box)
    pinned_now = set(pin_ids(box))
    return all(
        judge.organic(meta) or (pinned and meta.id in pinned_now and not judge.hidden(meta))
        for meta, pinned in shown
    )


def pin_ids(box: Box) -> list[str]:
    """The ids whose metadata :func:`arrange` needs for the box's pins (none when hidden)."""
    if box.hide_box is not None:
        return []
    return list(dict.fromkeys(pin[4] for pin in box.pins))
