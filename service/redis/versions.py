"""The published versions as the batch jobs read them: the live one, their info hashes, the
listing behind ``recs versions`` (the API reads the live version through its store)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from service.redis import keys
from service.redis.client import text, with_retry
from service.redis.queue import DEFAULT_DRIFT_THRESHOLD, drift


@dataclass(frozen=True)
class VersionRow:
    """One complete version as listed by ``recs versions``."""

    version: str
    built_at: str
    published_at: str | None
    articles: int
    k: int
    coverage: float | None
    current: bool
    # Incremental updates applied since the publish, and their share of the build's articles.
    upserts: int = 0
    deletes: int = 0
    drift: float = 0.0
    retrain_due: bool = False


def current_version(client: redis.Redis) -> str | None:
    """The live version id, or ``None`` when nothing is published."""
    value = with_retry(lambda: client.get(keys.CURRENT))
    return None if value is None else text(value)


def version_info(client: redis.Redis, version: str) -> dict[str, Any] | None:
    """The info hash of a version, decoded (numbers as numbers), or ``None`` if absent."""
    raw = with_retry(lambda: client.hgetall(keys.info_key(version)))
    if not raw:
        return None
    info: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
    for name in ("articles", "k", "next_row", "layout"):
        if name in info:
            info[name] = int(info[name])
    if "coverage" in info:
        info["coverage"] = float(info["coverage"])
    if "score_quantiles" in info:
        info["score_quantiles"] = json.loads(info["score_quantiles"])
    for name in ("published_at", "previous"):
        if info.get(name) == "":
            info[name] = None
    return info


def live_info(client: redis.Redis) -> dict[str, Any] | None:
    """Info of the live version (``None`` when nothing is published)."""
    version = current_version(client)
    return None if version is None else version_info(client, version)


def listed(client: redis.Redis, *, newest_first: bool = False) -> list[str]:
    """The complete versions (:data:`keys.VERSIONS`), oldest first unless ``newest_first``."""
    read = client.zrevrange if newest_first else client.zrange
    return [text(v) for v in with_retry(lambda: read(keys.VERSIONS, 0, -1))]


def list_versions(client: redis.Redis, *, drift_threshold: float | None = None) -> list[VersionRow]:
    """Complete versions, newest first, with the live one marked and their update drift."""
    threshold = DEFAULT_DRIFT_THRESHOLD if drift_threshold is None else drift_threshold
    current = current_version(client)
    rows = []
    for name in listed(client, newest_first=True):
        info = version_info(client, name) or {}
        moved = drift(info, threshold)
        rows.append(
            VersionRow(
                version=name,
                built_at=info.get("built_at", ""),
                published_at=info.get("published_at"),
                articles=int(info.get("articles", 0)),
                k=int(info.get("k", 0)),
                coverage=info.get("coverage"),
                current=name == current,
                upserts=moved["upserts"],
                deletes=moved["deletes"],
                drift=moved["share"],
                retrain_due=moved["retrain_due"],
            )
        )
    return rows
