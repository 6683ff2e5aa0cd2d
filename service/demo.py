"""``/demo``: article pages with both widgets, to click through related stories by hand.

Article bodies are not in the store (Redis holds only what the widget shows), so the demo reads
them from the model directory, ``MODEL_DIR``: always there in embedded mode, optional beside
Redis. Without it the demo answers 404 with a message saying so.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from models.records import ID_PATTERN, Article, read_articles
from service.errors import NotFound

bp = Blueprint("demo", __name__)

EXTENSION = "recs_demo"
# The article /demo opens: a story with a clear topic (coffee quotas) in the Reuters sample.
START_ARTICLE = "reuters-42"
DEMO_K = 6
# Heights of the widget's layout (service/static/widget.js): the page reserves the boxes'
# space in its own CSS, so nothing moves even before the async script has run.
CARD_REM, GAP_REM, HEADING_REM = 7.0, 0.875, 3.0
# Reuters wire copy marks a paragraph with an indented line; other corpora use blank lines.
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n|\n(?=[ \t]{2,}\S)")
_SPACE = re.compile(r"\s+")


class DemoCorpus:
    """The model directory's articles by id, read on first use (the API itself never needs
    the bodies, so a server that nobody demos does not hold them twice)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._lock = threading.Lock()
        self._articles: dict[str, Article] | None = None
        self._order: list[str] = []

    def _load(self) -> dict[str, Article]:
        with self._lock:
            if self._articles is None:
                articles = read_articles([self.model_dir / "articles.jsonl"]).articles
                self._order = [a.id for a in articles]
                self._articles = {a.id: a for a in articles}
            return self._articles

    def get(self, article_id: str) -> Article | None:
        """The article, or ``None``."""
        return self._load().get(article_id)

    def first_id(self) -> str:
        """The demo's start article: ``START_ARTICLE`` if present, else the first one."""
        articles = self._load()
        return START_ARTICLE if START_ARTICLE in articles else self._order[0]


def paragraphs(body: str) -> list[str]:
    """The body's paragraphs, with wire-copy line wrapping undone."""
    out = (_SPACE.sub(" ", part).strip() for part in _PARAGRAPH_BREAK.split(body))
    return [part for part in out if part]


def display_date(published_at: str | None) -> str:
    """``2 March 1987, 12:14 UTC`` (empty if missing or unparseable)."""
    if not published_at:
        return ""
    try:
        parsed = datetime.fromisoformat(published_at)
    except ValueError:
        return ""
    parsed = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return f"{parsed.day} {parsed:%B %Y, %H:%M} UTC"


def reserved_heights(k: int) -> dict[int, float]:
    """Height in rem of a box of ``k`` cards, by column count (the widget's own formula)."""
    heights = {}
    for columns in (1, 2, 3):
        rows = -(-k // columns)
        heights[columns] = HEADING_REM + rows * CARD_REM + (rows - 1) * GAP_REM
    return heights


def _corpus() -> DemoCorpus:
    corpus: DemoCorpus | None = current_app.extensions[EXTENSION]
    if corpus is None:
        raise NotFound(
            "the demo needs the model directory for article bodies: start the API with"
            " RECS_MODEL_DIR (or 'recs serve --model DIR')"
        )
    return corpus


@bp.get("/demo")
def start() -> BaseResponse:
    """Redirect to the start article."""
    return redirect(url_for("demo.article", article_id=_corpus().first_id()))


@bp.get("/demo/articles/<article_id>")
def article(article_id: str) -> Response:
    """One article of the model's corpus with both widgets under it."""
    corpus = _corpus()
    found = corpus.get(article_id) if ID_PATTERN.fullmatch(article_id) else None
    if found is None:
        raise NotFound(f"unknown article_id {article_id[:40]!r}", parameter="article_id")
    html = render_template(
        "demo_article.html",
        article=found,
        paragraphs=paragraphs(found.body),
        date=display_date(found.published_at),
        k=DEMO_K,
        heights=reserved_heights(DEMO_K),
    )
    response = Response(html, mimetype="text/html")
    # The page is the same for every reader (personalisation happens in the browser).
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def init_app(app: Flask) -> None:
    """Register the routes; the corpus is read lazily from ``MODEL_DIR`` if set."""
    model_dir = app.config.get("MODEL_DIR")
    app.extensions[EXTENSION] = DemoCorpus(Path(model_dir)) if model_dir else None
    app.register_blueprint(bp)
