"""``GET /v1/articles/<id>/related``: an article's stored neighbours, filtered, with caching."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.datastructures import MultiDict
from werkzeug.http import http_date

from models.records import ID_PATTERN
from models.tagnorm import fold_tag
from models.times import parse_time
from service.errors import BadRequest, NotFound
from service.related_cache import Cached, ResponseCache
from service.resilience import serve_stale_on_failure, stale_check
from service.rules.boxes import compiled_rules, now_epoch, pinned_metas, recheck
from service.rules.compiled import CompiledRules
from service.rules.engine import arrange, box_for
from service.store.base import ArticleMeta, NoLiveVersion, RelatedRead, Store, VersionInfo
from service.store_ext import get_store

bp = Blueprint("related", __name__)

CACHE_EXTENSION = "recs_related_cache"
CACHE_CONTROL_EXTENSION = "recs_related_cache_control"

MAX_EXCLUDE = 100
MAX_SECTION_LENGTH = 200
MAX_AGE_DAYS = 100_000
# Part of every ETag: bump it when the response format changes, so caches do not serve a
# body of the old shape under an unchanged model version.
ETAG_SALT = "related-v2"
# Neighbours read beyond what an answer needs without rules, for items flags or rules drop.
RULES_MARGIN = 5


@dataclass(frozen=True, slots=True)
class RelatedQuery:
    """The validated, normalised query of one request."""

    article_id: str
    k: int
    exclude: frozenset[str]
    section: str | None  # case-folded
    max_age_days: int | None

    def cache_key(self) -> str:
        """Canonical form: equal for queries that must give the same answer."""
        return "|".join(
            (
                self.article_id,
                str(self.k),
                ",".join(sorted(self.exclude)),
                self.section or "",
                "" if self.max_age_days is None else str(self.max_age_days),
            )
        )


def _whole_number(args: MultiDict[str, str], name: str, low: int, high: int) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    # isdigit() alone accepts non-ASCII digits such as "²"; keep to plain 0-9.
    if (
        not (raw.isascii() and raw.isdigit())
        or len(raw) > len(str(high))
        or not (low <= int(raw) <= high)
    ):
        raise BadRequest(
            f"{name} must be a whole number from {low} to {high}, got {raw[:20]!r}", parameter=name
        )
    return int(raw)


def parse_query(article_id: str, args: MultiDict[str, str]) -> RelatedQuery:
    """Validate the query parameters; :class:`BadRequest` names the first bad one."""
    config = current_app.config
    k = _whole_number(args, "k", 1, config["MAX_K"])
    exclude: set[str] = set()
    given = 0
    for value in args.getlist("exclude"):
        for item in value.split(","):
            # Every item counts, empty and repeated ones too, as the spec's maxItems does.
            given += 1
            if given > MAX_EXCLUDE:
                raise BadRequest(f"exclude: at most {MAX_EXCLUDE} ids", parameter="exclude")
            # Spaces only: the spec's item pattern allows spaces around an id, nothing else.
            item = item.strip(" ")
            if not item:
                continue
            if not ID_PATTERN.fullmatch(item):
                raise BadRequest(
                    f"exclude: {item[:40]!r} is not a valid article id", parameter="exclude"
                )
            exclude.add(item)
    section = args.get("section", "").strip()
    if len(section) > MAX_SECTION_LENGTH:
        raise BadRequest(
            f"section must be at most {MAX_SECTION_LENGTH} characters", parameter="section"
        )
    max_age_days = _whole_number(args, "max_age_days", 0, MAX_AGE_DAYS)
    return RelatedQuery(
        article_id=article_id,
        k=config["DEFAULT_K"] if k is None else k,
        exclude=frozenset(exclude),
        section=section.casefold() or None,
        max_age_days=max_age_days,
    )


@lru_cache(maxsize=64)
def _http_date(iso: str) -> str | None:
    """A version's ISO-8601 time as an HTTP date (``None`` if unparseable)."""
    # Cached: formatting it cost more than the rest of an answer from the response cache.
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return http_date(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def shared_tags(source: ArticleMeta | None, other: ArticleMeta) -> list[str]:
    """Display tags of ``other`` whose key both articles have, most specific first."""
    if source is None:
        return []
    return tags_with_keys(other, set(source.tag_keys))


def tags_with_keys(other: ArticleMeta, common: set[str]) -> list[str]:
    """Display tags of ``other`` whose key is in ``common``, most specific first."""
    # tag_keys are alias-resolved: when no display tag of ``other`` normalises to a shared key
    # (an alias or a split glued tag), the key itself is shown rather than dropping the match.
    if not common or not other.tag_keys:
        return []
    display = {fold_tag(tag): tag for tag in reversed(other.tags)}  # first spelling wins
    out: list[str] = []
    for key in other.tag_keys:
        if key in common:
            tag = display.get(key, key)
            if tag not in out:
                out.append(tag)
    return out


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# Every shown item is the article's fixed fields plus a score and shared tags. The fixed part
# is encoded once per metadata object and reused: the store hands out the same objects for as
# long as they are cached, and encoding dicts was a sixth of an uncached answer's cost.
def item_fields(meta: ArticleMeta) -> dict[str, Any]:
    """What every shown item says of its article (/related and "for you" alike)."""
    return {
        "id": meta.id,
        "title": meta.title,
        "url": meta.url,
        "section": meta.section,
        "published_at": meta.published_at,
        "image_url": meta.image_url,
    }


@lru_cache(maxsize=8192)
def _fixed_fields(meta: ArticleMeta) -> str:
    """``{"id":...,"image_url":...`` of an item: its JSON object without the closing brace."""
    return _encode(item_fields(meta))[:-1]


def _item_json(
    meta: ArticleMeta, score: float, source: ArticleMeta | None, pinned: bool = False
) -> str:
    # Four decimals: the Redis layout stores scores to ~1e-5, so more digits are noise.
    # repr(float) is what json writes for a float.
    shared = shared_tags(source, meta)
    tags = _encode(shared) if shared else "[]"
    # Labels only where they apply: an organic item's bytes are as before.
    labels = ',"source":"pinned"' if pinned else ""
    if meta.sponsored:
        labels += ',"sponsored":true'
    return f'{_fixed_fields(meta)},"score":{round(score, 4)!r},"shared_tags":{tags}{labels}}}'


def candidates(
    query: RelatedQuery, read: RelatedRead, cutoff: datetime | None
) -> Iterator[tuple[ArticleMeta | None, float]]:
    """Stored neighbours in order that pass the query's section and age filters, lazily."""
    metas = read.metas
    for index, neighbour in enumerate(read.neighbours):
        if neighbour.id == query.article_id or neighbour.id in query.exclude:
            continue
        # Indexed only here: a store may decode metadata lazily, so skipped or unreached
        # neighbours are never decoded.
        meta = metas[index]
        if meta is None:
            continue  # metadata missing from the store: nothing to show
        if query.section is not None and meta.section.casefold() != query.section:
            continue
        if cutoff is not None:
            published = parse_time(meta.published_at)
            # Undated articles cannot be shown to be recent enough.
            if published is None or published < cutoff:
                continue
        yield meta, neighbour.score


def render(
    article_id: str,
    version: str,
    items: Sequence[tuple[ArticleMeta, float]],
    source: ArticleMeta | None,
    pinned: Collection[str] = (),
    reason: str | None = None,
) -> bytes:
    """The JSON answer: ``{"article_id", "model_version", "items": [...]}``, compact, UTF-8;
    ``pinned`` ids are labelled ``"source":"pinned"``; ``reason`` says why a box is empty."""
    shown = ",".join(_item_json(m, score, source, m.id in pinned) for m, score in items)
    head = f'{{"article_id":{_encode(article_id)},"model_version":{_encode(version)}'
    tail = "" if reason is None else f',"reason":{_encode(reason)}'
    return f'{head},"items":[{shown}]{tail}}}'.encode()


def _etag(info: VersionInfo, rules_seq: int, query: RelatedQuery, shown: str) -> str:
    # What is shown is part of it, as the answer may depend on the clock (max_age_days,
    # embargoes, expiries, rule windows); so is the rules seq, so a rule change never meets an
    # old 304. Ids and labels, not the body: both stores give one ETag to one answer, though
    # Redis keeps scores to 1e-5.
    parts = [ETAG_SALT, info.version, str(info.seq), str(rules_seq), query.cache_key(), shown]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()


def _cache_headers(response: Response, etag: str, info: VersionInfo, rules_seq: int) -> Response:
    headers = response.headers
    headers["ETag"] = f'"{etag}"'  # hex digits: nothing to quote
    headers["Cache-Control"] = current_app.extensions[CACHE_CONTROL_EXTENSION]
    # The rules counter this worker's cache holds: shows when a rule change reached it.
    headers["X-Recs-Rules"] = str(rules_seq)
    built = _http_date(info.built_at)
    if built is not None:
        headers["Last-Modified"] = built
    return response


def _cutoff(days: int | None) -> datetime | None:
    if days is None:
        return None
    now: datetime = current_app.config["CLOCK"]()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        return now - timedelta(days=days)
    except OverflowError:
        return None  # before year 1: every dated article is recent enough


def answer(
    store: Store, info: VersionInfo, query: RelatedQuery, compiled: CompiledRules, now: float
) -> tuple[bytes, str, float, Callable[[], bool]] | None:
    """The rendered answer, what it shows (ids, labels, reason: for the ETag), until when it
    holds and its stale cache check; ``None`` for an unknown article."""
    # No metadata filter: the answer is within the first k + 1 + |exclude| stored neighbours
    # (the article itself and excluded ids may take places), plus a few that flags or rules
    # may drop; a short answer reads the rest below.
    limit = None
    if query.section is None and query.max_age_days is None:
        limit = query.k + 1 + len(query.exclude) + RULES_MARGIN
    read = store.related_articles(info.version, query.article_id, limit)
    if read is None:
        return None
    source = read.source
    # Section rules apply to the article's section and to the one a box asks for.
    sections = (source.section if source else None, query.section)
    blocked = (query.article_id, *query.exclude)
    box = box_for(
        compiled, now=now, article_id=query.article_id, sections=sections, blocked=blocked
    )
    pins = pinned_metas(store, info.version, box)
    cutoff = _cutoff(query.max_age_days)
    arranged = arrange(box, candidates(query, read, cutoff), query.k, pins)
    if len(arranged.items) < query.k and not read.complete and arranged.reason is None:
        # Dropped neighbours (flags, rules, missing metadata) used up the margin.
        full = store.related_articles(info.version, query.article_id)
        if full is not None:
            arranged = arrange(box, candidates(query, full, cutoff), query.k, pins)
    items = [(p.meta, p.payload or 0.0) for p in arranged.items]
    pinned = {p.meta.id for p in arranged.items if p.pinned}
    body = render(query.article_id, info.version, items, source, pinned, arranged.reason)
    shown = ",".join(f"{m.id}{'+' if m.id in pinned else ''}" for m, _ in items)
    check = recheck(
        [(p.meta, p.pinned) for p in arranged.items],
        article_id=query.article_id,
        sections=sections,
        blocked=blocked,
    )
    return body, f"{shown}|{arranged.reason or ''}", arranged.fresh_until, check


@bp.get("/v1/articles/<article_id>/related")
def related(article_id: str) -> Response:
    """Related articles of one article in the live model version, editorial rules applied."""
    if not ID_PATTERN.fullmatch(article_id):
        # Cannot exist; answered without touching the store.
        raise NotFound(f"unknown article_id {article_id[:40]!r}", parameter="article_id")
    query = parse_query(article_id, request.args)
    # If the store fails below, this query's last good answer is served, marked stale.
    serve_stale_on_failure("related", query.cache_key())
    store = get_store()
    info = store.current_version()
    if info is None:
        # A StoreUnavailable: a Redis that restarted empty still gets stale answers served.
        raise NoLiveVersion("no model version is published yet")
    compiled = compiled_rules(store)
    now = now_epoch()

    # Stored data changes only with the version's seq and the rules only with theirs; what the
    # clock changes (windows, embargoes, expiries) bounds each entry's life. A hot article's
    # answer (a news site's traffic is very skewed) is then served without a store round trip.
    cache: ResponseCache | None = current_app.extensions[CACHE_EXTENSION]
    cache_key = None
    if cache is not None and query.max_age_days is None:
        cache_key = (f"{info.version}#{info.seq}#{compiled.seq}", query.cache_key())
        cached = cache.get(cache_key, now)
        if cached is not None:
            data, etag, _, check = cached
            stale_check(check)
            if request.if_none_match.contains_weak(etag):
                return _cache_headers(Response(status=304), etag, info, compiled.seq)
            return _cache_headers(_json_response(data), etag, info, compiled.seq)

    found = answer(store, info, query, compiled, now)
    if found is None:
        raise NotFound(f"unknown article_id {article_id!r}", parameter="article_id")
    data, shown, fresh_until, check = found
    # Served stale (Redis down) only while the rules this process holds still allow it.
    stale_check(check)
    etag = _etag(info, compiled.seq, query, shown)
    if cache is not None and cache_key is not None:
        entry: Cached = (data, etag, fresh_until, check)
        cache.put(cache_key, entry)
    if request.if_none_match.contains_weak(etag):
        return _cache_headers(Response(status=304), etag, info, compiled.seq)
    return _cache_headers(_json_response(data), etag, info, compiled.seq)


def _json_response(data: bytes) -> Response:
    return Response(data, mimetype="application/json")


def init_app(app: Flask) -> None:
    """Register the route and create the app's answer cache (``RESPONSE_CACHE_SIZE``)."""
    size = app.config["RESPONSE_CACHE_SIZE"]
    app.extensions[CACHE_EXTENSION] = ResponseCache(size) if size > 0 else None
    app.extensions[CACHE_CONTROL_EXTENSION] = f"public, max-age={app.config['CACHE_MAX_AGE']}"
    app.register_blueprint(bp)
