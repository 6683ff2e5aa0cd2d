"""Shared fixtures. Redis tests talk to a real redis-server started by pytest-redis."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from pytest_redis import factories

if TYPE_CHECKING:
    from models.artifact import LoadedModel

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


# The API tests' model: trained once per session on the test corpus (tests/service_fixtures.py).
# Imported inside the fixtures: service_fixtures imports this module.
@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session model's directory (a module defining its own ``model_dir`` overrides it)."""
    from tests.service_fixtures import trained_model_dir

    return trained_model_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The session model, loaded."""
    from tests.service_fixtures import loaded_model

    return loaded_model(tmp_path_factory)


@pytest.fixture
def published(redis_url: str, redis_client: redis.Redis, loaded: LoadedModel) -> str:
    """The session model published to the (empty) test Redis; returns the Redis URL."""
    from service.redis.publish import publish

    publish(redis_client, loaded)
    return redis_url
