"""``/widget.js`` and the demo pages, without a browser (tests/test_widget_browser.py has one)."""

from __future__ import annotations

import gzip
import re

import pytest
from flask.testing import FlaskClient

from models.artifact import LoadedModel
from service import create_app
from service.demo import CARD_REM, GAP_REM, HEADING_REM, paragraphs, reserved_heights
from service.store.local import LocalStore
from service.widget import load_widget
from tests.paths import REPO

WIDGET = REPO / "service" / "static" / "widget.js"
# The README states the gzipped size; this bound keeps the widget small as it evolves.
MAX_GZIPPED = 8 * 1024


# ------------------------------------------------------------------------------- widget.js


def test_widget_is_served_gzipped_with_long_caching(client: FlaskClient) -> None:
    response = client.get("/widget.js", headers={"Accept-Encoding": "gzip, br"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(response.data) == WIDGET.read_bytes()
    assert len(response.data) <= MAX_GZIPPED
    assert response.headers["Cache-Control"] == (
        "public, max-age=86400, stale-while-revalidate=604800"
    )
    assert "Accept-Encoding" in response.headers["Vary"]
    assert re.fullmatch(r'W/"[0-9A-Za-z.+-]+-[0-9a-f]{16}"', response.headers["ETag"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


def test_widget_without_gzip_and_its_size(client: FlaskClient) -> None:
    response = client.get("/widget.js")
    assert "Content-Encoding" not in response.headers
    assert response.data == WIDGET.read_bytes()
    assert len(response.data) < 32 * 1024
    assert int(response.headers["Content-Length"]) == len(response.data)


def test_widget_revalidates_with_304(client: FlaskClient) -> None:
    etag = client.get("/widget.js").headers["ETag"]
    again = client.get("/widget.js", headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    # The validator names one script whatever the encoding.
    assert client.get("/widget.js", headers={"Accept-Encoding": "gzip"}).headers["ETag"] == etag


def test_a_pinned_current_version_is_immutable(client: FlaskClient) -> None:
    version = load_widget().version
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert version in client.get("/widget.js").headers["ETag"]
    pinned = client.get("/widget.js", query_string={"v": version})
    assert pinned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # An old pinned version gets today's script, which must not be cached as that version.
    stale = client.get("/widget.js", query_string={"v": "0.0.1"})
    assert "immutable" not in stale.headers["Cache-Control"]


def test_widget_script_has_no_dependencies_or_error_logging() -> None:
    source = WIDGET.read_text(encoding="utf-8")
    assert "import " not in source and "require(" not in source
    # Host pages' consoles stay clean: debug level only.
    assert "console.error" not in source and "console.log" not in source
    assert "innerHTML" not in source  # data reaches the page as text only


def test_widget_names_readers_only_by_the_signed_token() -> None:
    """Server-side history takes data-user-token (sent as user_token in JSON bodies); a bare
    user id is never read into a request (tests/test_widget_browser.py checks the traffic)."""
    source = WIDGET.read_text(encoding="utf-8")
    assert 'attr(box, "data-user-token") || attr(script, "data-user-token")' in source
    for sent in ("user_token: token", "user_token: state.token", "payload.user_token = "):
        assert sent in source  # the view, the recommendations, the clicks
    assert not re.search(r"\buser_id\b\s*[:=]", source)
    assert "user_token=" not in source and "user_id=" not in source  # never in a query
    # data-user-id is read only to warn that it was replaced.
    assert source.count('"data-user-id"') == 2
    assert 'attr(box, "data-user-id") && !attr(script, "data-user-id")' in source


# ------------------------------------------------------------------------------- demo


def test_demo_redirects_to_the_start_article(client: FlaskClient) -> None:
    response = client.get("/demo")
    assert response.status_code == 302
    assert response.headers["Location"] == "/demo/articles/reuters-42"


def test_demo_article_page_has_the_article_and_both_boxes(
    client: FlaskClient, loaded: LoadedModel
) -> None:
    article = next(a for a in loaded.articles if "<" in a.title and a.body.count("\n    ") >= 2)
    response = client.get(f"/demo/articles/{article.id}")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    escaped = article.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"<h1>{escaped}</h1>" in html  # Reuters titles carry '<TICKER>': escaped
    assert f'data-recs="related" data-article-id="{article.id}" data-k="6"' in html
    assert 'data-recs="foryou" data-k="6"' in html
    assert f'data-current-article="{article.id}"' in html
    assert '<script src="/widget.js" async></script>' in html
    assert html.count("<p>") >= 3


@pytest.mark.parametrize("article_id", ["no-such-article", "bad id!"])
def test_demo_unknown_article_is_a_json_404(client: FlaskClient, article_id: str) -> None:
    response = client.get(f"/demo/articles/{article_id}")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_demo_without_a_model_directory_says_what_it_needs(loaded: LoadedModel) -> None:
    client = create_app({"STORE": LocalStore(loaded), "MODEL_DIR": None}).test_client()
    for path in ("/demo", "/demo/articles/reuters-42"):
        response = client.get(path)
        assert response.status_code == 404
        assert "RECS_MODEL_DIR" in response.get_json()["message"]
    assert client.get("/widget.js").status_code == 200  # the widget itself needs no corpus


def test_paragraphs_undo_wire_copy_wrapping() -> None:
    body = "First line\nwraps here.\n    Second para\ngoes on.\n\nThird.\n  \n"
    assert paragraphs(body) == ["First line wraps here.", "Second para goes on.", "Third."]
    assert paragraphs("") == []


def test_demo_reserves_exactly_the_widgets_own_box_height() -> None:
    """The page's reservation and the widget's layout use the same sizes (no shift)."""
    source = WIDGET.read_text(encoding="utf-8")

    def default(name: str) -> float:
        match = re.search(rf"var\(--recs-{name},(\.?[\d.]+)rem\)", source)
        assert match, name
        return float(match.group(1))

    assert (default("card-height"), default("gap"), default("heading-height")) == (
        CARD_REM,
        GAP_REM,
        HEADING_REM,
    )
    assert reserved_heights(6) == {1: 49.375, 2: 25.75, 3: 17.875}
    template = (REPO / "service" / "templates" / "demo_article.html").read_text()
    for width in re.findall(r"@container recs \(min-width:([\d.]+rem)\)", source):
        assert f"@container (min-width: {width})" in template
