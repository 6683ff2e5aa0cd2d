"""The settings of "Recommended for you" ranking, validated on creation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RankingConfig:
    """Every knob of the ranking; validated on creation."""

    # Positions in the most-recent-first history after which a read counts half as much.
    history_half_life: float = 10.0
    # Hours after which a candidate's freshness factor halves; 0 turns freshness off.
    freshness_half_life_hours: float = 72.0
    # Per-section half-lives (keys case-folded), e.g. {"sport": 24}.
    section_half_life_hours: Mapping[str, float] = field(default_factory=dict)
    # Lowest freshness factor: an old article is damped, never zeroed.
    freshness_floor: float = 0.05
    # MMR trade-off: 0 ranks by relevance only, 1 by novelty only.
    diversity: float = 0.3
    # A candidate at least this similar to a chosen item is a near-duplicate: used only to fill.
    duplicate_threshold: float = 0.8
    max_history: int = 50
    max_candidates: int = 500
    # Candidates are described (metadata read) in relevance order, this many at a time, until
    # the MMR pool is full after the filters: freshness reorders within what was described.
    describe_batch: int = 32
    # MMR looks at the best max(mmr_pool, 4 * k) candidates (bounds the similarity look-ups).
    mmr_pool: int = 24
    # Popularity prior: a candidate gains popularity_weight x (its popularity / the top one's)
    # before freshness; 0 turns it off. Only the popular_candidates most popular articles get
    # it, and they join the candidates even when no history item lists them. 10 was chosen
    # on half of the MIND replay's impressions, the prior fed trending counts as in the API
    # (docs/evaluation.md); it applies only when a caller passes popularity counts.
    popularity_weight: float = 10.0
    popular_candidates: int = 100
    # Section affinity of the prior: a popular article's prior is multiplied by 1 +
    # section_affinity x the reader's (recency-weighted) share of known history in its section,
    # so "popular in the sections you read" outranks "popular elsewhere". 0 (off): chosen on
    # the same half of the MIND replay, where no value above 0 found more clicks.
    section_affinity: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("history_half_life", self.history_half_life > 0),
            ("freshness_half_life_hours", self.freshness_half_life_hours >= 0),
            ("freshness_floor", 0 < self.freshness_floor <= 1),
            ("diversity", 0 <= self.diversity < 1),
            ("duplicate_threshold", 0 < self.duplicate_threshold <= 1),
            ("max_history", 1 <= self.max_history <= 1000),
            ("max_candidates", 1 <= self.max_candidates <= 10_000),
            ("mmr_pool", 1 <= self.mmr_pool <= 10_000),
            ("describe_batch", 1 <= self.describe_batch <= 10_000),
            ("popularity_weight", 0 <= self.popularity_weight <= 1000),
            ("popular_candidates", 0 <= self.popular_candidates <= 10_000),
            ("section_affinity", 0 <= self.section_affinity <= 1000),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"ranking setting {name} is out of range")
        for section, hours in self.section_half_life_hours.items():
            if not isinstance(section, str) or not isinstance(hours, int | float) or hours < 0:
                raise ValueError("section_half_life_hours must map sections to hours >= 0")
