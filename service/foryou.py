""" "Recommended for you": ``/v1/recommendations``, ``/v1/events`` and ``/v1/users/<id>``.

Ranking itself is :func:`models.ranking.recommend` (pure); this module parses requests, picks
the data source (Redis or the embedded model), adds the trending and latest fallbacks and keeps
the optional server-side history. See docs/recommendations.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import Counter

from models.ranking import RankingConfig, Recommendation, recommend
from models.records import ID_PATTERN
from service import bodies, tokens
from service import history as history_store
from service.auth import admin_required, secret_setting
from service.errors import ApiError, BadRequest, NotFound
from service.foryou_source import RedisSource, RowCaches, latest_ids, store_source
from service.history import HistorySettings, Reader, TrendingCache
from service.read_budgets import DEFAULT_TIMEOUTS, KindClients
from service.related import item_fields, tags_with_keys
from service.resilience import serve_stale_on_failure
from service.store.base import ArticleMeta, NoLiveVersion, Store, StoreUnavailable, VersionInfo
from service.store_ext import ConfigError, get_store, redis_client

log = logging.getLogger(__name__)

T = TypeVar("T")

bp = Blueprint("foryou", __name__)

EXTENSION = "recs_foryou"

DEFAULTS: dict[str, Any] = {
    "HISTORY_TTL_DAYS": 30,  # a stored history expires this long after the reader's last event
    "HISTORY_MAX": 50,  # history items used (longer histories are truncated) and stored
    "TRENDING_WINDOW_HOURS": 24,
    "TRENDING_HALF_LIFE_HOURS": 6.0,
    "TRENDING_CACHE_SECONDS": 10.0,  # per process: trending need not be exact to the second
    "HISTORY_HALF_LIFE": 10.0,  # history positions after which a read counts half
    "FRESHNESS_HALF_LIFE_HOURS": 72.0,  # 0: no freshness
    "SECTION_HALF_LIFE_HOURS": {},  # {"sport": 24, ...}, sections case-insensitive
    "FRESHNESS_FLOOR": 0.05,
    "DIVERSITY": 0.3,
    "DUPLICATE_THRESHOLD": 0.8,
    "MAX_CANDIDATES": 500,
    "MAX_BODY_BYTES": 16_384,
    # Trending bounds and reader counting (service/history.py, docs/security.md).
    "TRENDING_BUCKET_SIZE": 2000,  # articles kept per hourly bucket
    "TRENDING_READER_MAX": 1000,  # articles one reader counts for in the window
    "TRENDING_ANONYMOUS_WEIGHT": 0.5,  # an address's count (a signed reader's is 1)
    # Seconds each kind of "for you" Redis work may take (its own pool and breaker).
    "HISTORY_REDIS_TIMEOUT": DEFAULT_TIMEOUTS["history"],
    "TRENDING_REDIS_TIMEOUT": DEFAULT_TIMEOUTS["trending"],
    "EVENTS_REDIS_TIMEOUT": DEFAULT_TIMEOUTS["events"],
    # Key of the readers' tokens (service/tokens.py); unset: no server-side history.
    "USER_SIGNING_KEY": None,
    # Popularity prior (docs/recommendations.md): a candidate gains POPULARITY_WEIGHT x its
    # trending count / the top count; the POPULAR_CANDIDATES most trending articles compete
    # with the history's neighbours. 0: the personal score alone. 10: chosen on the MIND
    # replay's tune half, the prior fed the replayed trending counts (docs/evaluation.md); it
    # beats most-popular there, but not trending itself.
    "POPULARITY_WEIGHT": 10.0,
    "POPULAR_CANDIDATES": 100,
    # Section affinity G: a popular article's prior is multiplied by 1 + G x the reader's
    # (recency-weighted) share of known history in its section. 0 (off): on the MIND replay's
    # tune half no G above 0 found a click more (docs/evaluation.md). Above 0, the history's
    # and the popular articles' metadata are read before scoring (cached like every row).
    "SECTION_AFFINITY": 0.0,
    # Rows (id -> row, neighbour list, metadata) kept per process in Redis mode for the live
    # (version, seq); ~1.1 KB each on Reuters (0: none; then a request makes two Redis reads).
    "ROW_CACHE_SIZE": 32_768,
}

MAX_EXCLUDE = 100
MAX_SECTION_LENGTH = 200
EVENT_TYPES = ("view", "click")
EVENT_SOURCES = ("history", "trending", "latest", "related", "other")
MAX_POSITION = 1000
RECOMMEND_FIELDS = {"history", "user_token", "k", "exclude", "section"}
EVENT_FIELDS = {"user_token", "article_id", "type", "position", "source"}
# Identities never travel in URLs (access logs, Referer headers, browser history).
URL_IDENTITY_PARAMETERS = ("user_token", "user_id")
# A header that says which parts of an answer were left out because their store failed.
DEGRADED_HEADER = "X-Recs-Degraded"


class Unauthorized(ApiError):
    """A reader identity the site did not sign (a bare id, a forged or expired token)."""

    status = 401
    error = "unauthorized"


class NotImplementedHere(ApiError):
    """A feature this deployment cannot offer (server-side history without Redis)."""

    status = 501
    error = "not_implemented"


@dataclass(frozen=True, slots=True)
class ForYouState:
    """What the routes share, built once per app."""

    ranking: RankingConfig
    history: HistorySettings
    trending: TrendingCache
    rows: RowCaches
    max_body: int
    events: Counter
    served: Counter
    degraded: Counter
    signing_key: str | None
    clients: KindClients | None  # None in embedded mode


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    """A validated recommendation request."""

    history: list[str] | None  # None: not given (use the stored one when a reader is given)
    user_id: str | None  # from a verified token only
    k: int
    exclude: frozenset[str]
    section: str | None


def _state() -> ForYouState:
    state: ForYouState = current_app.extensions[EXTENSION]
    return state


# ------------------------------------------------------------------------------- parsing
def _check_id(value: Any, field: str, what: str = "article id") -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string, got {_type(value)}", parameter=field)
    if not ID_PATTERN.fullmatch(value):
        raise BadRequest(
            f"{field}: {value[:40]!r} is not a valid {what} (1-128 of A-Z a-z 0-9 . _ : -)",
            parameter=field,
        )
    return value


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _id_list(values: Any, field: str, limit: int | None) -> list[str]:
    if not isinstance(values, list):
        raise BadRequest(f"{field}: must be a list of ids, got {_type(values)}", parameter=field)
    if limit is not None and len(values) > limit:
        raise BadRequest(f"{field}: at most {limit} ids", parameter=field)
    return [_check_id(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _split(values: Iterable[str]) -> list[str]:
    # Spaces only, as the spec's item pattern: a tab or newline is not an id.
    return [item.strip(" ") for value in values for item in value.split(",") if item.strip(" ")]


def _k(value: Any) -> int:
    high = current_app.config["MAX_K"]
    if value is None:
        return int(current_app.config["DEFAULT_K"])
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's "integer" includes 12.0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise BadRequest(
            f"k must be a whole number from 1 to {high}, got {value!r:.20}", parameter="k"
        )
    return value


def _section(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"section: must be a string, got {_type(value)}", parameter="section")
    value = value.strip()
    if len(value) > MAX_SECTION_LENGTH:
        raise BadRequest(
            f"section must be at most {MAX_SECTION_LENGTH} characters", parameter="section"
        )
    return value.casefold() or None


def _json_body(allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (Content-Type application/json), size- and depth-checked; a
    bare ``user_id`` is refused as an identity the site did not sign."""
    body = bodies.json_object(_state().max_body, allowed | {"user_id"})
    if "user_id" in body:
        raise Unauthorized(
            "user_id: a bare reader id is not accepted; send user_token, signed by the site"
            " (docs/security.md)",
            parameter="user_id",
        )
    return body


def _reader(token: Any) -> str | None:
    """The user id of a ``user_token`` (``None`` when absent); 400/401/501 when refused."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise BadRequest(
            f"user_token: must be a string, got {_type(token)}", parameter="user_token"
        )
    key = _state().signing_key
    if key is None:
        raise NotImplementedHere(
            "server-side reader history is off: set RECS_USER_SIGNING_KEY (and sign reader"
            " tokens on the site, docs/security.md) to turn it on, or send the history with"
            " each request",
            parameter="user_token",
        )
    try:
        return tokens.verify(key, token, _now().timestamp()).user_id
    except tokens.TokenError as exc:
        if exc.malformed:
            raise BadRequest(f"user_token: {exc}", parameter="user_token") from None
        raise Unauthorized(f"user_token: {exc}", parameter="user_token") from None


def _no_identity_in_url() -> None:
    for name in URL_IDENTITY_PARAMETERS:
        if name in request.args:
            raise BadRequest(
                f"{name}: reader identities are never accepted in a URL (they would reach"
                " access logs); POST a JSON body with user_token",
                parameter=name,
            )


def _recommend_query() -> RecommendQuery:
    if request.method == "POST":
        body = _json_body(RECOMMEND_FIELDS)
        raw_history = body.get("history")
        history = None if raw_history is None else _id_list(raw_history, "history", None)
        exclude = _id_list(body.get("exclude", []), "exclude", MAX_EXCLUDE)
        k, section = body.get("k"), body.get("section")
        token = body.get("user_token")
    else:
        _no_identity_in_url()
        args = request.args
        history = None
        if "history" in args:
            history = [_check_id(v, "history") for v in _split(args.getlist("history"))]
        exclude = [_check_id(v, "exclude") for v in _split(args.getlist("exclude"))]
        # Empty items count too, as the spec's maxItems does.
        given = sum(value.count(",") + 1 for value in args.getlist("exclude"))
        if max(len(exclude), given) > MAX_EXCLUDE:
            raise BadRequest(f"exclude: at most {MAX_EXCLUDE} ids", parameter="exclude")
        k, section = args.get("k"), args.get("section")
        token = None
    # Validated before the token: a malformed query is a 400 whoever sends it.
    k, exclude_ids, section = _k(k), frozenset(exclude), _section(section)
    return RecommendQuery(
        history=history,
        user_id=_reader(token),
        k=k,
        exclude=exclude_ids,
        section=section,
    )


# ------------------------------------------------------------------------------- data
def _now() -> datetime:
    now: datetime = current_app.config["CLOCK"]()
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _live(store: Store) -> VersionInfo:
    info = store.current_version()
    if info is None:
        # A StoreUnavailable: a Redis that restarted empty still gets stale answers served.
        raise NoLiveVersion("no model version is published yet")
    return info


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
    return {
        **item_fields(meta),
        "score": round(score, 4),
        "because": list(because),
        "shared_tags": shared_tags(meta, contributors),
        "source": source,
    }


def _fill(
    store: Store,
    version: str,
    ids: Sequence[str],
    items: list[dict[str, Any]],
    blocked: Collection[str],
    section: str | None,
    k: int,
    source: str,
) -> None:
    """Append fallback items from ``ids`` (in order) until ``k``: no repeats, none blocked."""
    taken = {item["id"] for item in items}
    pending = [i for i in dict.fromkeys(ids) if i not in taken and i not in blocked]
    position = 0
    while len(items) < k and position < len(pending):
        # Small chunks: most ids pass, so this is one store read in the usual case.
        chunk = pending[position : position + max(2 * (k - len(items)), 10)]
        position += len(chunk)
        for meta in store.articles(version, chunk):
            if meta is None or (section is not None and meta.section.casefold() != section):
                continue
            items.append(_render(meta, 0.0, source))
            if len(items) == k:
                return


def _latest(store: Store, version: str, section: str | None, limit: int) -> list[str]:
    client = redis_client(store)
    if client is not None:
        return latest_ids(client, version, section, limit)
    inner = getattr(store, "inner", store)
    latest = getattr(inner, "latest", None)  # LocalStore computes it from the model
    return list(latest(version, section, limit)) if latest is not None else []


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response = Response(data, status=status, mimetype="application/json")
    # Personal and time-dependent: never stored by a shared cache.
    response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------------------- routes
def _optional(kind: str, read: Callable[[], T], default: T, missing: list[str]) -> T:
    """``read()``, or ``default`` (noting ``kind`` in ``missing``) when its store fails: a
    box without trending or without the stored history is better than no box."""
    try:
        return read()
    except StoreUnavailable as exc:
        log.debug("for you: %s unavailable: %s", kind, exc)
        _state().degraded.labels(kind).inc()
        missing.append(kind)
        return default


@bp.route("/v1/recommendations", methods=["GET", "POST"])
def recommendations() -> Response:
    """Recommendations from a reader's history, with trending and latest fallbacks."""
    state = _state()
    query = _recommend_query()
    if query.user_id is None:
        # If Redis fails below, this query's last good answer is served, marked stale. Never
        # for a reader's stored history: an erased history must not come back from a cache.
        stale_key = [query.history, query.k, sorted(query.exclude), query.section]
        serve_stale_on_failure("foryou", json.dumps(stale_key))
    store = get_store()
    info = _live(store)
    clients = state.clients
    missing: list[str] = []
    history = query.history
    if history is None and query.user_id is not None and clients is not None:
        user_id, limit = query.user_id, state.ranking.max_history
        stored: list[str] = []
        history = _optional(
            "history",
            lambda: history_store.user_history(clients["history"], user_id, limit),
            stored,
            missing,
        )
    history = history or []
    now = _now()
    trending: list[tuple[str, float]] = []
    if clients is not None:
        # Trending counts are cached per process: the prior costs no Redis read most of the time.
        trending = _optional(
            "trending",
            lambda: state.trending.get(clients["trending"], now.timestamp()),
            [],
            missing,
        )
        result = recommend(
            RedisSource(_related_client(store), info, state.rows.get(info)),
            history,
            k=query.k,
            now=now,
            config=state.ranking,
            exclude=query.exclude,
            section=query.section,
            popularity=trending if state.ranking.popularity_weight else [],
        )
    else:
        result = recommend(
            store_source(store, info.version),
            history,
            k=query.k,
            now=now,
            config=state.ranking,
            exclude=query.exclude,
            section=query.section,
        )
    items = [_item(rec, result.history) for rec in result.items]
    blocked = set(result.read) | set(query.exclude)
    if len(items) < query.k and trending:
        ids = [article_id for article_id, _ in trending]
        _fill(store, info.version, ids, items, blocked, query.section, query.k, "trending")
    if len(items) < query.k:
        limit = query.k + len(blocked) + len(items)
        latest = _latest(store, info.version, query.section, limit)
        _fill(store, info.version, latest, items, blocked, query.section, query.k, "latest")
    served: dict[str, int] = {}
    for item in items:
        served[item["source"]] = served.get(item["source"], 0) + 1
    for source, count in served.items():
        state.served.labels(source).inc(count)  # one metric write per source, not per item
    response = _json({"model_version": info.version, "items": items, "ignored": result.ignored})
    if missing:
        response.headers[DEGRADED_HEADER] = ", ".join(missing)
    return response


def _related_client(store: Store) -> Any:
    client = redis_client(store)
    assert client is not None  # KindClients exist only in Redis mode
    return client


def _item(rec: Recommendation[ArticleMeta], history: Mapping[str, ArticleMeta]) -> dict[str, Any]:
    # No history item lists it: it is ranked for its popularity prior alone.
    source = "history" if rec.because else "trending"
    return _render(rec.meta, rec.score, source, rec.because, history)


def _position(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POSITION
    ):
        raise BadRequest(
            f"position: must be a whole number from 0 to {MAX_POSITION}", parameter="position"
        )
    return value


@bp.post("/v1/events")
def events() -> Response:
    """Record a view or click for trending, and in a signed reader's history.

    The article must be in the live version (404 otherwise, nothing stored). Trending counts a
    reader once per article in its window (service/history.py).
    """
    state = _state()
    body = _json_body(EVENT_FIELDS)
    if "article_id" not in body:
        raise BadRequest("article_id: is required", parameter="article_id")
    article_id = _check_id(body["article_id"], "article_id")
    kind = body.get("type", "view")
    if kind not in EVENT_TYPES:
        raise BadRequest(f"type: must be one of {', '.join(EVENT_TYPES)}", parameter="type")
    _position(body.get("position"))
    source = body.get("source")
    if source is not None and source not in EVENT_SOURCES:
        raise BadRequest(f"source: must be one of {', '.join(EVENT_SOURCES)}", parameter="source")
    user_id = _reader(body.get("user_token"))
    if state.clients is None:
        raise NotImplementedHere(
            "server-side history and trending need Redis (RECS_REDIS_URL); this server runs"
            " from a model directory. Send the history with each recommendations request."
        )
    info = _live(get_store())
    reader: Reader | None = None
    if user_id is not None:
        reader = Reader("u", user_id)
    elif request.remote_addr:
        reader = Reader("a", request.remote_addr)
    outcome = history_store.record_event(
        state.clients["events"], info.version, article_id, reader, _now().timestamp(), state.history
    )
    if outcome == history_store.UNKNOWN_ARTICLE:
        raise NotFound(
            f"article_id: {article_id!r} is not in the live model version; nothing was recorded",
            parameter="article_id",
        )
    state.events.labels(kind, source or "none").inc()
    return _json({"status": "accepted"}, 202)


@bp.delete("/v1/users/<user_id>")
@admin_required
def delete_user(user_id: str) -> Response:
    """Erase a reader's stored history (Bearer RECS_ADMIN_TOKEN; 404 when none is set)."""
    _check_id(user_id, "user_id", "user id")
    clients = _state().clients
    if clients is None:
        raise NotImplementedHere("no server-side history without Redis: nothing to erase")
    history_store.delete_user(clients["history"], user_id)
    response = Response(status=204)
    response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------------------- setup
def _number(config: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = config[name]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name} (env RECS_{name}) must be a number from {low:g} to {high:g}")
    return float(value)


def _settings(config: Mapping[str, Any]) -> tuple[RankingConfig, HistorySettings]:
    sections = config["SECTION_HALF_LIFE_HOURS"]
    if isinstance(sections, str):
        try:
            sections = json.loads(sections) if sections.strip() else {}
        except ValueError:
            sections = None
    if not isinstance(sections, dict):
        raise ConfigError("SECTION_HALF_LIFE_HOURS must be a JSON object of section -> hours")
    history_max = int(_number(config, "HISTORY_MAX", 1, 1000))
    try:
        ranking = RankingConfig(
            history_half_life=_number(config, "HISTORY_HALF_LIFE", 0.01, 1e6),
            freshness_half_life_hours=_number(config, "FRESHNESS_HALF_LIFE_HOURS", 0, 1e7),
            section_half_life_hours={str(s).casefold(): h for s, h in sections.items()},
            freshness_floor=_number(config, "FRESHNESS_FLOOR", 1e-6, 1),
            diversity=_number(config, "DIVERSITY", 0, 0.99),
            duplicate_threshold=_number(config, "DUPLICATE_THRESHOLD", 0.01, 1),
            max_history=history_max,
            max_candidates=int(_number(config, "MAX_CANDIDATES", 1, 10_000)),
            popularity_weight=_number(config, "POPULARITY_WEIGHT", 0, 1000),
            popular_candidates=int(_number(config, "POPULAR_CANDIDATES", 0, 500)),
            section_affinity=_number(config, "SECTION_AFFINITY", 0, 1000),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = HistorySettings(
        ttl_seconds=int(_number(config, "HISTORY_TTL_DAYS", 1 / 86_400, 3650) * 86_400),
        max_items=history_max,
        window_hours=int(_number(config, "TRENDING_WINDOW_HOURS", 1, 24 * 90)),
        half_life_hours=_number(config, "TRENDING_HALF_LIFE_HOURS", 0.01, 1e6),
        cache_seconds=_number(config, "TRENDING_CACHE_SECONDS", 0, 3600),
        bucket_size=int(_number(config, "TRENDING_BUCKET_SIZE", 10, 1_000_000)),
        seen_max=int(_number(config, "TRENDING_READER_MAX", 1, 1_000_000)),
        anonymous_weight=_number(config, "TRENDING_ANONYMOUS_WEIGHT", 0, 1),
    )
    return ranking, settings


def init_app(app: Flask) -> None:
    """Read the settings (``RECS_*`` env or the app config) and register the routes."""
    for name, value in DEFAULTS.items():
        app.config.setdefault(name, value)
    ranking, settings = _settings(app.config)
    registry = app.extensions["recs_metrics"].registry
    app.extensions[EXTENSION] = ForYouState(
        ranking=ranking,
        history=settings,
        trending=TrendingCache(settings),
        rows=RowCaches(int(_number(app.config, "ROW_CACHE_SIZE", 0, 10_000_000))),
        max_body=int(_number(app.config, "MAX_BODY_BYTES", 256, 10_000_000)),
        events=Counter(
            "recs_events",
            "Reader events received, by type and widget source.",
            ["type", "source"],
            registry=registry,
        ),
        served=Counter(
            "recs_recommended_items",
            "Recommended items served, by source.",
            ["source"],
            registry=registry,
        ),
        degraded=Counter(
            "recs_degraded_reads",
            "Recommendations answered without a part whose store failed, by part.",
            ["part"],
            registry=registry,
        ),
        signing_key=secret_setting(app.config, "USER_SIGNING_KEY", tokens.MIN_KEY_LENGTH),
        clients=_kind_clients(app),
    )
    app.register_blueprint(bp)


def _kind_clients(app: Flask) -> KindClients | None:
    from service.store_ext import EXTENSION as STORE

    base = redis_client(app.extensions[STORE])
    if base is None:
        return None
    timeouts = {
        kind: _number(app.config, f"{kind.upper()}_REDIS_TIMEOUT", 0.01, 60)
        for kind in DEFAULT_TIMEOUTS
    }
    return KindClients(base, timeouts, float(app.config["BREAKER_COOLDOWN"]))
