""" "For you" settings and the state its routes share, read once per app from the config."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, current_app
from prometheus_client import Counter

from models.ranking import RankingConfig
from service import tokens
from service.auth import secret_setting
from service.settings import ConfigError, number_setting
from service.store.base import HistorySettings

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
    # Trending bounds and reader counting (service/redis/events.py, docs/security.md).
    "TRENDING_BUCKET_SIZE": 2000,  # articles kept per hourly bucket
    "TRENDING_READER_MAX": 1000,  # articles one reader counts for in the window
    "TRENDING_ANONYMOUS_WEIGHT": 0.5,  # an address's count (a signed reader's is 1)
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
}


@dataclass(frozen=True, slots=True)
class ForYouState:
    """What the routes share, built once per app."""

    ranking: RankingConfig
    history: HistorySettings
    max_body: int
    events: Counter
    served: Counter
    degraded: Counter
    signing_key: str | None


def state() -> ForYouState:
    """The current app's state."""
    value: ForYouState = current_app.extensions[EXTENSION]
    return value


def settings_from(config: Mapping[str, Any]) -> tuple[RankingConfig, HistorySettings]:
    sections = config["SECTION_HALF_LIFE_HOURS"]
    if isinstance(sections, str):
        try:
            sections = json.loads(sections) if sections.strip() else {}
        except ValueError:
            sections = None
    if not isinstance(sections, dict):
        raise ConfigError("SECTION_HALF_LIFE_HOURS must be a JSON object of section -> hours")
    history_max = int(number_setting(config, "HISTORY_MAX", 1, 1000))
    try:
        ranking = RankingConfig(
            history_half_life=number_setting(config, "HISTORY_HALF_LIFE", 0.01, 1e6),
            freshness_half_life_hours=number_setting(config, "FRESHNESS_HALF_LIFE_HOURS", 0, 1e7),
            section_half_life_hours={str(s).casefold(): h for s, h in sections.items()},
            freshness_floor=number_setting(config, "FRESHNESS_FLOOR", 1e-6, 1),
            diversity=number_setting(config, "DIVERSITY", 0, 0.99),
            duplicate_threshold=number_setting(config, "DUPLICATE_THRESHOLD", 0.01, 1),
            max_history=history_max,
            max_candidates=int(number_setting(config, "MAX_CANDIDATES", 1, 10_000)),
            popularity_weight=number_setting(config, "POPULARITY_WEIGHT", 0, 1000),
            popular_candidates=int(number_setting(config, "POPULAR_CANDIDATES", 0, 500)),
            section_affinity=number_setting(config, "SECTION_AFFINITY", 0, 1000),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = HistorySettings(
        ttl_seconds=int(number_setting(config, "HISTORY_TTL_DAYS", 1 / 86_400, 3650) * 86_400),
        max_items=history_max,
        window_hours=int(number_setting(config, "TRENDING_WINDOW_HOURS", 1, 24 * 90)),
        half_life_hours=number_setting(config, "TRENDING_HALF_LIFE_HOURS", 0.01, 1e6),
        cache_seconds=number_setting(config, "TRENDING_CACHE_SECONDS", 0, 3600),
        bucket_size=int(number_setting(config, "TRENDING_BUCKET_SIZE", 10, 1_000_000)),
        seen_max=int(number_setting(config, "TRENDING_READER_MAX", 1, 1_000_000)),
        anonymous_weight=number_setting(config, "TRENDING_ANONYMOUS_WEIGHT", 0, 1),
    )
    return ranking, settings


def build_state(app: Flask) -> ForYouState:
    """Read the settings (``RECS_*`` env or the app config) into the routes' state."""
    for name, value in DEFAULTS.items():
        app.config.setdefault(name, value)
    ranking, settings = settings_from(app.config)
    registry = app.extensions["recs_metrics"].registry
    return ForYouState(
        ranking=ranking,
        history=settings,
        max_body=int(number_setting(app.config, "MAX_BODY_BYTES", 256, 10_000_000)),
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
    )
