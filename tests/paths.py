"""Paths the tests read: a leaf module, so fixtures and test modules import it, never conftest."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ARTICLES = REPO / "data" / "sample" / "reuters-sample.jsonl"
TEST_DATA = REPO / "tests" / "data"
