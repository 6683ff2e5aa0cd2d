"""Shared fixtures. Redis tests talk to a real redis-server started by pytest-redis.

Helpers that test modules call directly (apps, the session model, the fixed clock) live in
tests/service_fixtures.py and paths in tests/paths.py: test modules import those, never this
file, and neither imports it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from pytest_redis import factories

from models.artifact import LoadedModel
from service.redis.publish import publish
from tests.service_fixtures import embedded_app, loaded_model, trained_model_dir

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
@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session model's directory (a module defining its own ``model_dir`` overrides it)."""
    return trained_model_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The session model, loaded."""
    return loaded_model(tmp_path_factory)


@pytest.fixture
def published(redis_url: str, redis_client: redis.Redis, loaded: LoadedModel) -> str:
    """The session model published to the (empty) test Redis; returns the Redis URL."""
    publish(redis_client, loaded)
    return redis_url


@pytest.fixture(scope="module")
def app(model_dir: Path) -> Flask:
    """The API serving ``model_dir`` in embedded mode with the fixed clock, one per module."""
    return embedded_app(model_dir)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()
