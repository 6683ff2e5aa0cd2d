"""``/v1/recommendations``: a reader's history in, ranked items with reasons out.

Ranking itself is :func:`models.ranking.recommend` (pure); this module reads through the app's
store (any kind: the same code serves Redis and a model directory), adds the trending and
latest fallbacks and leaves out, marked, what a failing part of the store could not give.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from flask import Response

from models.ranking import Recommendation, recommend
from service.foryou.parsing import now, recommend_query
from service.foryou.settings import bp, state
from service.related import item_fields, tags_with_keys
from service.resilience import serve_stale_on_failure, stale_check
from service.rules.boxes import compiled_rules, pinned_metas, recheck
from service.rules.engine import HIDE_BOX_REASON, Box, arrange, box_for
from service.store.base import ArticleMeta, NoLiveVersion, Store, StoreUnavailable, VersionInfo
from service.store_ext import get_store

log = logging.getLogger(__name__)

T = TypeVar("T")

# Which parts of an answer were left out because their store failed.
DEGRADED_HEADER = "X-Recs-Degraded"


def live(store: Store) -> VersionInfo:
    """The live version, or :class:`NoLiveVersion` (a 503, or a stale answer if remembered)."""
    info = store.current_version()
    if info is None:
        # A StoreUnavailable: a Redis that restarted empty still gets stale answers served.
        raise NoLiveVersion("no model version is published yet")
    return info


def json_response(body: Mapping[str, Any], status: int = 200) -> Response:
    """A personal JSON answer: never stored by a shared cache."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response = Response(data, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def shared_tags(item: ArticleMeta, sources: Iterable[ArticleMeta]) -> list[str]:
    """Display tags of ``item`` that the given history items also have, most specific first."""
    common: set[str] = set()
    for source in sources:
        common.update(source.tag_keys)
    return tags_with_keys(item, common)


def _render(
    meta: ArticleMeta,
    score: float,
    source: str,
    because: Sequence[str] = (),
    history: Mapping[str, ArticleMeta] | None = None,
) -> dict[str, Any]:
    # `is not None`, not truthiness: the history mapping decodes lazily, and len() would
    # decode every item of it.
    contributors = [history[h] for h in because if history is not None and h in history]
    item = {
        **item_fields(meta),
        "score": round(score, 4),
        "because": list(because),
        "shared_tags": shared_tags(meta, contributors),
        "source": source,
    }
    if meta.sponsored:  # shown only when pinned; labelled so the widget can mark it
        item["sponsored"] = True
    return item


def _fallbacks(
    store: Store,
    version: str,
    trending: Sequence[tuple[str, float]],
    box: Box,
    section: str | None,
    k: int,
) -> Iterator[tuple[ArticleMeta | None, dict[str, Any]]]:
    """Trending, then latest, as candidates for the box, read only as far as the box asks: in
    chunks (most ids pass, so usually one store read), and more of "latest" while the box
    still wants items (flags and rules may drop many)."""
    tried = set(box.blocked)
    for meta in _metas(store, version, [i for i, _ in trending], tried, section, k):
        yield meta, _render(meta, 0.0, "trending")
    limit, seen = 2 * k + len(box.blocked) + len(box.pins), 0
    while True:
        latest = store.latest(version, section, limit)
        for meta in _metas(store, version, latest[seen:], tried, section, k):
            yield meta, _render(meta, 0.0, "latest")
        if len(latest) < limit:
            return
        seen, limit = len(latest), limit * 4


def _metas(
    store: Store, version: str, ids: Sequence[str], tried: set[str], section: str | None, k: int
) -> Iterator[ArticleMeta]:
    """Metadata of ``ids`` not tried yet (and of ``section``), read in small chunks."""
    pending = [i for i in dict.fromkeys(ids) if i not in tried]
    tried.update(pending)
    size = max(2 * k, 10)
    for start in range(0, len(pending), size):
        for meta in store.articles(version, pending[start : start + size]):
            if meta is not None and (section is None or meta.section.casefold() == section):
                yield meta


def _optional(kind: str, read: Callable[[], T], default: T, missing: list[str]) -> T:
    """``read()``, or ``default`` (noting ``kind`` in ``missing``) when its store fails: a
    box without trending or without the stored history is better than no box."""
    try:
        return read()
    except StoreUnavailable as exc:
        log.debug("for you: %s unavailable: %s", kind, exc)
        state().degraded.labels(kind).inc()
        missing.append(kind)
        return default


def _item(rec: Recommendation[ArticleMeta], history: Mapping[str, ArticleMeta]) -> dict[str, Any]:
    # No history item lists it: it is ranked for its popularity prior alone.
    source = "history" if rec.because else "trending"
    return _render(rec.meta, rec.score, source, rec.because, history)


@bp.route("/v1/recommendations", methods=["GET", "POST"])
def recommendations() -> Response:
    """Recommendations from a reader's history, with trending and latest fallbacks."""
    shared = state()
    query = recommend_query()
    if query.user_id is None:
        # If the store fails below, this query's last good answer is served, marked stale.
        # Never for a reader's stored history: an erased history must not come back.
        stale_key = [query.history, query.k, sorted(query.exclude), query.section]
        serve_stale_on_failure("foryou", json.dumps(stale_key))
    store = get_store()
    info = live(store)
    when = now().timestamp()
    missing: list[str] = []
    history = query.history
    if history is None and query.user_id is not None:
        user_id, limit = query.user_id, shared.ranking.max_history
        stored: list[str] = []
        history = _optional(
            "history",
            lambda: store.reader_history(user_id, limit, when, shared.history),
            stored,
            missing,
        )
    box = box_for(
        compiled_rules(store),
        now=when,
        sections=(query.section,),
        blocked=query.exclude,
    )
    if box.hide_box is not None:  # switched off by a rule: nothing to rank
        body = {
            "model_version": info.version,
            "items": [],
            "ignored": [],
            "reason": HIDE_BOX_REASON,
        }
        return json_response(body)
    none: list[tuple[str, float]] = []
    # Trending counts are cached per process: the prior costs no store read most of the time.
    trending = _optional("trending", lambda: store.trending(when, shared.history), none, missing)
    pins = pinned_metas(store, info.version, box)
    result = recommend(
        store.ranking_source(info),
        history or [],
        # Exactly k: the ranking's diversity pool depends on k, and a dropped item's place
        # goes to the fallbacks.
        k=query.k,
        now=now(),
        config=shared.ranking,
        exclude=query.exclude,
        section=query.section,
        popularity=trending if shared.ranking.popularity_weight else [],
    )
    ranked = [(rec.meta, _item(rec, result.history)) for rec in result.items]
    # The reader's own history is never recommended back, pinned or not.
    box = replace(box, blocked=box.blocked | set(result.read))
    arranged = arrange(
        box,
        ranked,
        query.k,
        pins,
        more=lambda: _fallbacks(store, info.version, trending, box, query.section, query.k),
    )
    items = [
        _render(p.meta, 0.0, "pinned") if p.pinned or p.payload is None else p.payload
        for p in arranged.items
    ]
    # Served stale (Redis down) only while the rules this process holds still allow it.
    shown = [(p.meta, p.pinned) for p in arranged.items]
    stale_check(recheck(shown, sections=(query.section,), blocked=box.blocked))
    served: dict[str, int] = {}
    for item in items:
        served[item["source"]] = served.get(item["source"], 0) + 1
    for source, count in served.items():
        shared.served.labels(source).inc(count)  # one metric write per source, not per item
    answer: dict[str, Any] = {
        "model_version": info.version,
        "items": items,
        "ignored": result.ignored,
    }
    if arranged.reason is not None:
        answer["reason"] = arranged.reason
    response = json_response(answer)
    if missing:
        response.headers[DEGRADED_HEADER] = ", ".join(missing)
    return response
