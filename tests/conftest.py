"""Shared fixtures. Redis tests talk to a real redis-server started by pytest-redis."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pytest_redis import factories

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ARTICLES = REPO / "data" / "sample" / "reuters-sample.jsonl"
TEST_DATA = REPO / "tests" / "data"

# One server process per test session on a free port; each test gets it flushed (redisdb).
redis_proc = factories.redis_proc(
    executable=shutil.which("redis-server") or "/usr/bin/redis-server",
    port=None,  # type: ignore[arg-type]  # pytest-redis picks a free port for None
)
redisdb = factories.redisdb("redis_proc")


@pytest.fixture
def redis_url(redisdb: redis.Redis, redis_proc: Any) -> Iterator[str]:
    """URL of an empty, isolated Redis database on the real test server."""
    yield f"redis://{redis_proc.host}:{redis_proc.port}/0"


@pytest.fixture
def redis_client(redisdb: redis.Redis) -> redis.Redis:
    """A client of the same empty database as ``redis_url``."""
    return redisdb
