"""Helpers shared by the API tests: one small trained model per session, apps, a fixed clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from service import create_app
from tests.paths import SAMPLE_ARTICLES

# Articles of the sample used by the API tests: enough for real neighbour lists, quick to fit.
N_ARTICLES = 400
BUILT_AT = datetime(1987, 3, 21, 6, 0, 0, tzinfo=UTC)
# "Now" for max_age_days: four days after the last test story (1987-03-16); the first is
# from 1987-02-26.
NOW = datetime(1987, 3, 20, 12, 0, 0, tzinfo=UTC)
SECTIONS = {"earn": "Earnings", "acq": "Deals"}

_cache: dict[str, Any] = {}


def fixed_clock() -> datetime:
    """The tests' "now"."""
    return NOW


def _test_corpus(path: Path) -> None:
    """The first sample articles, with a section, URL and image the sample lacks."""
    # Sections come from the first Reuters topic, so articles of a section are related; the
    # display case differs from the queries' in tests of the case-insensitive filter.
    with open(SAMPLE_ARTICLES, encoding="utf-8") as source, open(path, "w") as out:
        for number, line in enumerate(source):
            if number == N_ARTICLES:
                break
            record = json.loads(line)
            topics = record.get("topics") or ["other"]
            record["section"] = SECTIONS.get(topics[0], "Markets")
            record["url"] = f"https://news.example/{record['id']}"
            record["image_url"] = f"https://img.news.example/{record['id']}.jpg"
            out.write(json.dumps(record) + "\n")


def trained_model_dir(factory: pytest.TempPathFactory) -> Path:
    """A model trained on the test corpus; trained once per session, whichever test asks."""
    if "dir" not in _cache:
        base = factory.mktemp("api-model")
        corpus = base / "articles.jsonl"
        _test_corpus(corpus)
        articles = read_articles([corpus]).articles
        model = RelatedModel(config=ModelConfig(k=30)).fit(articles)
        save_model(model, articles, base / "model", created_at=BUILT_AT)
        _cache["dir"] = base / "model"
        _cache["corpus"] = corpus
    path: Path = _cache["dir"]
    return path


def corpus_file(factory: pytest.TempPathFactory) -> Path:
    """The JSON Lines file the session model was trained on."""
    trained_model_dir(factory)
    path: Path = _cache["corpus"]
    return path


def loaded_model(factory: pytest.TempPathFactory) -> LoadedModel:
    """The session model, loaded (cached)."""
    if "loaded" not in _cache:
        _cache["loaded"] = load_model(trained_model_dir(factory))
    loaded: LoadedModel = _cache["loaded"]
    return loaded


def embedded_app(model_dir: Path, **config: Any) -> Flask:
    """An app serving ``model_dir`` without Redis, with the fixed clock."""
    settings: dict[str, Any] = {
        "TESTING": True,
        "MODEL_DIR": str(model_dir),
        "REDIS_URL": None,
        "CLOCK": fixed_clock,
    }
    settings.update(config)
    return create_app(settings)


def redis_app(redis_url: str, **config: Any) -> Flask:
    """An app serving from Redis, with the fixed clock."""
    settings: dict[str, Any] = {
        "TESTING": True,
        "REDIS_URL": redis_url,
        "MODEL_DIR": None,
        "CLOCK": fixed_clock,
    }
    settings.update(config)
    return create_app(settings)


# The public write path's tests (test_events, test_abuse): an admin token, a reader-token key,
# no trending cache and no rate limits unless a test sets them.
ADMIN_TOKEN = "s3cret-admin-token-0123456789"
SIGNING_KEY = "test-signing-key-0123456789abcdef"
TOKEN_EXPIRES = int(NOW.timestamp()) + 86_400


def events_client(redis_url: str, **config: Any) -> FlaskClient:
    """A test client of a Redis app with server-side history on and no rate limits."""
    settings: dict[str, Any] = {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "USER_SIGNING_KEY": SIGNING_KEY,
        "TRENDING_CACHE_SECONDS": 0,
        "EVENTS_RATE_LIMIT": "off",
        "RECOMMENDATIONS_RATE_LIMIT": "off",
    }
    settings.update(config)
    return redis_app(redis_url, **settings).test_client()
