"""Freshness: how much a candidate's age damps its score (per-section half-lives, a floor)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from models.ranking.config import RankingConfig
from models.ranking.source import Described
from models.records import published_micros, utc_micros

LN2 = math.log(2.0)


def freshness_factors(
    metas: Sequence[Described], now: datetime, config: RankingConfig
) -> list[float]:
    """Each item's freshness factor in [floor, 1]; undated items get the floor."""
    # Integer microseconds, cached per string: the same ages as datetime arithmetic
    # (timedelta.total_seconds() divides the same integer), for a fraction of the cost.
    times = [published_micros(m.published_at) for m in metas]
    dated = [t for t in times if t is not None]
    if not dated:
        return [1.0] * len(metas)  # nothing dated: freshness cannot tell items apart
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # Ages count from the newest candidate when it is older than "now": this multiplies every
    # factor by the same constant (the order is unchanged), but an archive years old (Reuters
    # 1987) no longer underflows every factor to the floor.
    reference = min(utc_micros(now), max(dated))
    log_floor = math.log(config.freshness_floor)
    sections, default = config.section_half_life_hours, config.freshness_half_life_hours
    out = []
    for meta, published in zip(metas, times, strict=True):
        half_life = sections.get(meta.section.casefold(), default) if sections else default
        if not half_life:
            out.append(1.0)
        elif published is None:
            out.append(config.freshness_floor)
        else:
            hours = max(0.0, (reference - published) / 10**6 / 3600.0)
            # Log space, clamped: exp() of a huge negative number is never taken.
            out.append(math.exp(max(log_floor, -LN2 * hours / half_life)))
    return out
