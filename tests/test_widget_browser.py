"""The widget in a real browser: Debian's Chromium driven by Playwright against a live server.

The server is the real app in embedded mode (a model trained from the Reuters sample) on a
free loopback port. Skipped with a reason when Playwright or /usr/bin/chromium is missing;
CI installs both. Screenshots go to test-output/ (git-ignored).
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from models.artifact import save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from service import create_app
from tests.paths import REPO, SAMPLE_ARTICLES

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)

from playwright.sync_api import (  # noqa: E402 - after the skip checks on purpose
    Browser,
    ConsoleMessage,
    Page,
    Route,
    sync_playwright,
)
from werkzeug.serving import BaseWSGIServer, make_server  # noqa: E402

# Playwright's own browser download cannot work offline: always the system Chromium, with
# everything that would phone home switched off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = REPO / "test-output"
START = "reuters-42"  # the demo's start article: coffee quotas, with clear neighbours
K = 6
RELATED = '[data-recs="related"]'
FORYOU = '[data-recs="foryou"]'
# Chromium logs every non-2xx fetch as 'Failed to load resource: ...' at level error; that is
# the browser's network log, not the widget's (it cannot be suppressed from script), so the
# checks below leave exactly those lines out.
NETWORK_LOG = "Failed to load resource"
# A reader token as the site's backend signs it: <user_id>.<expires_unix>.<43-char sig>. The
# server does not check it in these tests: they capture what the widget sends.
TOKEN = "reader-7.4102444800.q0Zx-Vb_9sT3kLmNpQrStUvWxYz0123456789AbCdEf"
JSON_TYPE = "application/json"
# Spies installed before any page script: how each POST left the page (beacon or fetch, with
# which type, keepalive and credentials). For the tests that stay on the page.
TRANSPORT_SPY = """
window.__posts = [];
(function () {
  var beacon = navigator.sendBeacon && navigator.sendBeacon.bind(navigator);
  if (beacon) navigator.sendBeacon = function (url, data) {
    window.__posts.push({via: "beacon", url: String(url), type: (data && data.type) || ""});
    return beacon(url, data);
  };
  var fetch = window.fetch;
  window.fetch = function (url, init) {
    init = init || {};
    if (String(init.method || "GET").toUpperCase() === "POST") {
      var headers = new Headers(init.headers || {});
      window.__posts.push({via: "fetch", url: String(url), type: headers.get("Content-Type") || "",
        keepalive: !!init.keepalive, credentials: init.credentials || ""});
    }
    return fetch.apply(this, arguments);
  };
})();
"""


# ------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Received:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class EventRecorder:
    """WSGI middleware keeping every request as the server received it (``requests``), the
    bodies of ``POST /v1/events`` among them (``events``: a beacon's body is not visible to
    Playwright's request events), and serving the test's own host pages (``pages``: path ->
    (content type, body))."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.events: list[dict[str, Any]] = []
        self.requests: list[Received] = []
        self.pages: dict[str, tuple[str, bytes]] = {}

    def clear(self) -> None:
        self.events.clear()
        self.requests.clear()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = b""
        if environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
        received = Received(
            environ["REQUEST_METHOD"],
            environ["PATH_INFO"],
            environ.get("QUERY_STRING", ""),
            environ.get("CONTENT_TYPE", ""),
            body,
        )
        self.requests.append(received)
        page = self.pages.get(environ["PATH_INFO"])
        if page is not None:
            start_response("200 OK", [("Content-Type", page[0])])
            return [page[1]]
        if received.path == "/v1/events" and received.method == "POST":
            self.events.append(received.json())
        return self.app(environ, start_response)

    def posts(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def wait_for(self, expected: dict[str, Any], timeout: float = 3.0) -> bool:
        """Whether an event with (at least) these fields arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(expected.items() <= event.items() for event in self.events):
                return True
            time.sleep(0.05)
        return False


@dataclass
class Server:
    url: str
    recorder: EventRecorder


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API + demo on a free loopback port."""
    articles = read_articles([SAMPLE_ARTICLES]).articles
    # rerank off: the exact blended lists, fitted in seconds instead of ~20 s.
    model = RelatedModel(config=ModelConfig(k=20, rerank=False)).fit(articles)
    model_dir = tmp_path_factory.mktemp("widget") / "model"
    save_model(model, articles, model_dir)
    # Any origin may call: the cross-origin test serves its host page from another origin.
    app = create_app({"MODEL_DIR": str(model_dir), "REDIS_URL": None, "CORS_ORIGINS": "*"})
    yield from serve(app)


def serve(app: Flask) -> Iterator[Server]:
    """``app`` on a loopback port in a thread, its events recorded, until the generator ends."""
    recorder = EventRecorder(app.wsgi_app)
    app.wsgi_app = recorder  # type: ignore[method-assign]
    httpd: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", recorder)
    finally:
        httpd.shutdown()
        thread.join(5)


# The demo's sponsored story and the rules file that pins it (Makefile: demo-serve).
DEMO_SPONSORED = REPO / "data" / "sample" / "demo-sponsored.jsonl"
DEMO_RULES = REPO / "data" / "sample" / "demo-rules.json"


@pytest.fixture(scope="module")
def demo_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo as `make demo-serve` runs it: the sample plus one sponsored story, pinned by
    the demo rules file (``RECS_RULES_FILE``)."""
    articles = read_articles([SAMPLE_ARTICLES, DEMO_SPONSORED]).articles
    model = RelatedModel(config=ModelConfig(k=20, rerank=False)).fit(articles)
    model_dir = tmp_path_factory.mktemp("widget-demo") / "model"
    save_model(model, articles, model_dir)
    app = create_app(
        {"MODEL_DIR": str(model_dir), "REDIS_URL": None, "RULES_FILE": str(DEMO_RULES)}
    )
    yield from serve(app)


@pytest.fixture
def server(live: Server) -> str:
    """The live server's base URL, with no requests recorded yet."""
    live.recorder.clear()
    return live.url


@pytest.fixture
def events(live: Server) -> EventRecorder:
    return live.recorder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Session:
    """One fresh browser context (empty localStorage) and what its page reported."""

    page: Page
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # every request of the browser context

    def script_errors(self) -> list[str]:
        return [e for e in self.errors if NETWORK_LOG not in e]


@pytest.fixture
def session(browser: Browser) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    # A layout-shift observer from the first moment, before any page script.
    context.add_init_script(
        "window.__cls = 0; try { new PerformanceObserver(function (list) {"
        " list.getEntries().forEach(function (e) {"
        " if (!e.hadRecentInput) window.__cls += e.value; });"
        " }).observe({type: 'layout-shift', buffered: true}); } catch (e) {}"
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    result = Session(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            result.errors.append(f"console: {message.text}")
        elif message.type == "warning":
            result.warnings.append(message.text)

    page.on("console", on_console)
    context.on("request", lambda request: result.urls.append(request.url))
    page.on("pageerror", lambda error: result.errors.append(f"pageerror: {error}"))
    try:
        yield result
    finally:
        context.close()


def api(server: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(server + path, timeout=10) as response:
        body: dict[str, Any] = json.load(response)
    return body


def card_ids(page: Page, box: str) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        f"{box} a.recs__link", "links => links.map(a => a.dataset.recsId)"
    )
    return ids


def wait_state(page: Page, box: str, state: str) -> None:
    page.locator(box).scroll_into_view_if_needed()  # the boxes load lazily, near the viewport
    page.wait_for_selector(f'{box}[data-recs-state="{state}"]', state="attached")


def screenshot(page: Page, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class Captured:
    """The widget's ``POST /v1/recommendations`` requests, answered by the test."""

    answer: dict[str, Any]
    requests: list[tuple[dict[str, str], str]] = field(default_factory=list)  # headers, body


def capture_recommendation_posts(page: Page, server: str, k: int) -> Captured:
    """Answers each ``POST /v1/recommendations`` with the API's history-free answer (these
    tests check what the widget sends, not the server's token check) and keeps its headers
    and body; anything else goes on to the server."""
    captured = Captured(api(server, f"/v1/recommendations?k={k}"))

    def handle(route: Route) -> None:
        request = route.request
        if request.method != "POST":
            route.continue_()
            return
        captured.requests.append((request.headers, request.post_data or ""))
        # Cross-origin the page needs CORS; Playwright answers the preflight itself.
        route.fulfill(json=captured.answer, headers={"Access-Control-Allow-Origin": "*"})

    page.route("**/v1/recommendations*", handle)
    return captured


def assert_token_only_in_bodies(session: Session, events: EventRecorder) -> None:
    """The token never appears in a URL (browser side or as the server saw it), and no body
    names a ``user_id``."""
    signature = TOKEN.rsplit(".", 1)[1]
    urls = session.urls + [f"{r.path}?{r.query}" for r in events.requests]
    assert urls
    for url in urls:
        for word in (TOKEN, signature, "user_token", "user_id"):
            assert word not in url, url
    for received in events.requests:
        if received.body:
            assert "user_id" not in received.json(), received


def host_page(events: EventRecorder, path: str, body: str) -> None:
    """A host page served by the live server (both loopback names reach it)."""
    page = f"""<!doctype html><html lang="en"><head><title>site</title>
<link rel="icon" href="data:,"></head><body>{body}</body></html>"""
    events.pages[path] = ("text/html; charset=utf-8", page.encode())


# Clicks stay on the page (the widget's listener on the box runs first), so the spies can be
# read afterwards.
STAY = '<script>document.addEventListener("click", function (e) { e.preventDefault(); });</script>'


# ------------------------------------------------------------------------------- tests


def test_related_cards_then_for_you_follows_the_reading_history(
    server: str, session: Session, events: EventRecorder
) -> None:
    page = session.page
    page.goto(f"{server}/demo")
    assert page.url == f"{server}/demo/articles/{START}"
    wait_state(page, RELATED, "ready")

    # The related box: exactly the API's k neighbours, in order, as real links.
    expected = [i["id"] for i in api(server, f"/v1/articles/{START}/related?k={K}")["items"]]
    assert len(expected) == K
    assert card_ids(page, RELATED) == expected
    links = page.locator(f"{RELATED} li > a.recs__link")
    assert links.count() == K
    # Reuters articles have no URL: the default link template leads to the demo page.
    assert links.first.get_attribute("href") == f"{server}/demo/articles/{expected[0]}"
    heading = page.locator(f"{RELATED} h2")
    assert heading.inner_text() == "You may also like"
    assert page.locator(f"{RELATED} ul").get_attribute("aria-labelledby") == heading.get_attribute(
        "id"
    )

    wait_state(page, FORYOU, "ready")
    first_history = page.evaluate("RelatedStories.history()")
    assert first_history == [START]
    before = card_ids(page, FORYOU)
    assert before and START not in before
    shot = screenshot(page, "demo.png")
    assert shot.stat().st_size > 10_000

    # Click through: the click is reported, the next page records the new article, and
    # "for you" now answers for the two-article history.
    with page.expect_navigation():
        links.first.click()
    assert page.url == f"{server}/demo/articles/{expected[0]}"
    wait_state(page, RELATED, "ready")
    wait_state(page, FORYOU, "ready")
    history = page.evaluate("RelatedStories.history()")
    assert history == [expected[0], START]
    after = card_ids(page, FORYOU)
    assert after != before
    # "For you" loads after the related box and leaves out the page's article and its cards.
    shown = [expected[0], *card_ids(page, RELATED)]
    query = f"k={K}&history={','.join(history)}&exclude={','.join(shown)}"
    answer = api(server, f"/v1/recommendations?{query}")
    assert after == [i["id"] for i in answer["items"] if i["id"] not in history][:K]
    assert not set(after) & set(shown)
    screenshot(page, "demo-after-click.png")

    click = {"article_id": expected[0], "type": "click", "position": 0, "source": "related"}
    assert events.wait_for(click), events.events
    assert session.script_errors() == []


@pytest.mark.parametrize("width", [1000, 420])
def test_no_layout_shift_while_the_boxes_load(server: str, session: Session, width: int) -> None:
    page = session.page
    # Tall enough that both boxes are on screen from the start, where a shift would count.
    page.set_viewport_size({"width": width, "height": 2600})
    page.goto(f"{server}/demo/articles/{START}")
    footer = page.locator("footer").bounding_box()
    wait_state(page, RELATED, "ready")
    wait_state(page, FORYOU, "ready")
    page.wait_for_timeout(200)  # a frame or two for any late shift to be reported
    assert page.evaluate("window.__cls") == 0
    # Belt and braces: the content under the boxes has not moved.
    assert page.locator("footer").bounding_box() == footer
    assert session.script_errors() == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, '{"error":"internal","message":"internal error"}'), (200, '{"items":[]}')],
    ids=["http-500", "empty-answer"],
)
def test_api_errors_leave_the_page_intact_and_the_boxes_hidden(
    server: str, session: Session, status: int, body: str
) -> None:
    page = session.page
    page.set_viewport_size({"width": 1000, "height": 2600})

    def fail(route: Route) -> None:
        route.fulfill(status=status, content_type="application/json", body=body)

    page.route("**/v1/articles/*/related*", fail)
    page.route("**/v1/recommendations*", fail)
    page.goto(f"{server}/demo/articles/{START}")
    footer = page.locator("footer").bounding_box()
    wait_state(page, RELATED, "hidden")
    wait_state(page, FORYOU, "hidden")
    assert not page.locator(RELATED).is_visible()
    assert not page.locator(FORYOU).is_visible()
    assert page.locator("h1").is_visible()
    assert page.locator(f"{RELATED} a").count() == 0
    # On screen when they failed: the space stays (invisible), so nothing jumps.
    assert page.locator("footer").bounding_box() == footer
    assert page.evaluate("window.__cls") == 0
    assert session.script_errors() == []


def test_a_hanging_api_is_given_up_after_the_timeout(server: str, session: Session) -> None:
    page = session.page
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)  # never answered

    page.route("**/v1/articles/*/related*", hold)
    started = time.monotonic()
    page.goto(f"{server}/demo/articles/{START}")
    wait_state(page, RELATED, "hidden")
    waited = time.monotonic() - started
    assert 1.4 <= waited < 5, waited  # the default 1.5 s timeout, not the browser's own
    assert held
    assert not page.locator(RELATED).is_visible()
    assert page.locator("h1").is_visible()
    assert session.script_errors() == []


def test_keyboard_reaches_the_card_links(server: str, session: Session) -> None:
    page = session.page
    page.goto(f"{server}/demo/articles/{START}")
    wait_state(page, RELATED, "ready")
    first = card_ids(page, RELATED)[0]
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('recs__link')"):
            break
    else:
        pytest.fail("Tab never reached a card link")
    assert page.evaluate("document.activeElement.dataset.recsId") == first
    # Keyboard focus is visible (an outline, not the browser default that themes may remove).
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert outline[0] == "solid" and outline[1] >= 2
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{server}/demo/articles/{first}"


def _png() -> bytes:
    # A 1x1 PNG: the card image, fulfilled by the test (no network).
    import base64

    return base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )


def test_cards_from_another_origin_with_images_urls_and_server_side_history(
    server: str, session: Session, events: EventRecorder
) -> None:
    """An embed on another site: CORS, data-user-token events, images, unsafe URLs ignored."""
    page = session.page
    site = server.replace("127.0.0.1", "localhost")  # another origin, still loopback
    host_page = f"""<!doctype html><html lang="en"><head><title>site</title>
<link rel="icon" href="data:,"></head><body style="--recs-accent:#0057b8">
<h1 data-current-article="{START}">A host page</h1>
<div data-recs="related" data-article-id="{START}" data-k="4"></div>
<div data-recs="foryou" data-k="3" data-user-token="{TOKEN}"
     data-link-template="{site}/read/{{id}}"></div>
<script src="{server}/widget.js" async></script></body></html>"""
    # Served by the real server, not fulfilled by Playwright: Chromium's local-network-access
    # rules treat a page without a real address as public, and block its calls to loopback.
    events.pages["/host.html"] = ("text/html; charset=utf-8", host_page.encode())
    events.pages["/img/card.png"] = ("image/png", _png())

    def with_images(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["items"][0]["image_url"] = f"{site}/img/card.png"
        body["items"][1]["url"] = "javascript:alert(1)"
        body["items"][2]["url"] = "https://news.example/story"
        route.fulfill(response=response, json=body)

    page.route("**/v1/articles/*/related*", with_images)
    recs = capture_recommendation_posts(page, server, 3)
    page.goto(f"{site}/host.html")
    wait_state(page, RELATED, "ready")
    wait_state(page, FORYOU, "ready")

    related = page.locator(f"{RELATED} a.recs__link")
    assert related.count() == 4
    image = page.locator(f"{RELATED} img")
    assert image.count() == 1 and image.get_attribute("alt") == ""
    page.wait_for_function("document.querySelector('.recs__img').naturalWidth === 1")
    ids = card_ids(page, RELATED)
    # A javascript: URL never becomes a link; the API base comes from the script's src.
    assert related.nth(1).get_attribute("href") == f"{server}/demo/articles/{ids[1]}"
    assert related.nth(2).get_attribute("href") == "https://news.example/story"
    foryou = page.locator(f"{FORYOU} a.recs__link")
    assert 1 <= foryou.count() <= 3
    assert foryou.first.get_attribute("href", timeout=1000) == (
        f"{site}/read/{card_ids(page, FORYOU)[0]}"
    )
    # data-user-token: the view went to the server first (which may refuse it; the widget
    # carries on), then the box asked for the reader's recommendations, both with the token
    # in a JSON body; nothing was written to this browser's storage.
    view = {"user_token": TOKEN, "article_id": START, "type": "view"}
    [view_post] = [r for r in events.posts("/v1/events") if r.json().get("type") == "view"]
    assert (view_post.json(), view_post.content_type) == (view, JSON_TYPE)
    [(headers, body)] = recs.requests
    assert headers["content-type"] == JSON_TYPE
    # After the related box: without the page's article and what that box shows.
    assert json.loads(body) == {"user_token": TOKEN, "k": 3, "exclude": [START, *ids]}
    assert page.evaluate("RelatedStories.history()") == []
    # Themed through --recs-accent on the host page.
    accent = "getComputedStyle(document.querySelector('.recs__heading')).borderTopColor"
    assert page.evaluate(accent) == "rgb(0, 87, 184)"

    page.route(f"{site}/read/*", lambda route: route.fulfill(body="ok"))
    with page.expect_navigation():
        foryou.first.click()
    # The first card shown: the widget leaves out what the related box already shows.
    first = next(i for i in recs.answer["items"] if i["id"] not in ids and i["id"] != START)
    clicked = {
        "article_id": first["id"],
        "type": "click",
        "position": 0,
        "source": first.get("source") or "other",
        "user_token": TOKEN,
    }
    assert events.wait_for(clicked), events.events
    [click_post] = [r for r in events.posts("/v1/events") if r.json().get("type") == "click"]
    assert (click_post.json(), click_post.content_type) == (clicked, JSON_TYPE)
    assert_token_only_in_bodies(session, events)
    assert session.script_errors() == []


@pytest.mark.parametrize("origin", ["same-origin", "cross-origin"])
def test_token_events_are_json_by_beacon_same_origin_and_keepalive_fetch_cross_origin(
    server: str, session: Session, events: EventRecorder, origin: str
) -> None:
    """Every POST leaves as application/json with user_token: the click by sendBeacon (a JSON
    Blob) on the API's own origin, by fetch with keepalive and no credentials elsewhere."""
    page = session.page
    site = server if origin == "same-origin" else server.replace("127.0.0.1", "localhost")
    host_page(
        events,
        "/transport.html",
        f"""<h1 data-current-article="{START}">A host page</h1>
<div data-recs="related" data-article-id="{START}" data-k="4"></div>
<div data-recs="foryou" data-k="3"></div>{STAY}
<script src="{server}/widget.js" data-user-token="{TOKEN}" async></script>""",
    )
    page.context.add_init_script(TRANSPORT_SPY)
    recs = capture_recommendation_posts(page, server, 3)
    page.goto(f"{site}/transport.html")
    wait_state(page, RELATED, "ready")
    wait_state(page, FORYOU, "ready")
    first = card_ids(page, RELATED)[0]
    page.locator(f"{RELATED} a.recs__link").first.click()

    # The token on the script tag covers every box: the related box's click carries it.
    clicked = {
        "article_id": first,
        "type": "click",
        "position": 0,
        "source": "related",
        "user_token": TOKEN,
    }
    assert events.wait_for(clicked), events.events
    # As the server received them: JSON bodies with Content-Type application/json.
    received = {r.json()["type"]: r for r in events.posts("/v1/events")}
    assert received["view"].json() == {"user_token": TOKEN, "article_id": START, "type": "view"}
    assert received["click"].json() == clicked
    assert {r.content_type for r in events.posts("/v1/events")} == {JSON_TYPE}
    [(headers, body)] = recs.requests
    assert headers["content-type"] == JSON_TYPE
    # After the related box: without the page's article and what that box shows.
    shown = [START, *card_ids(page, RELATED)]
    assert json.loads(body) == {"user_token": TOKEN, "k": 3, "exclude": shown}

    # As they left the page: the view awaited by fetch, the click by the path for the origin.
    events_url = f"{server}/v1/events"
    keepalive = {"via": "fetch", "type": JSON_TYPE, "keepalive": True, "credentials": "omit"}
    posts: list[dict[str, Any]] = page.evaluate("window.__posts")
    view, click = [p for p in posts if p["url"] == events_url]
    assert view == {**keepalive, "url": events_url}
    if origin == "same-origin":
        assert click == {"via": "beacon", "url": events_url, "type": JSON_TYPE}
    else:
        assert click == {**keepalive, "url": events_url}
    assert [p["url"] for p in posts] == [events_url, f"{server}/v1/recommendations", events_url]
    assert {p["type"] for p in posts} == {JSON_TYPE}

    assert_token_only_in_bodies(session, events)
    assert page.evaluate("RelatedStories.history()") == []
    assert not [w for w in session.warnings if "[recs]" in w]
    assert session.script_errors() == []


def test_a_refused_token_still_fills_the_box_without_a_history(
    server: str, session: Session, events: EventRecorder
) -> None:
    """An expired or foreign token (401): the box asks again, anonymously and history-free."""
    page = session.page
    host_page(
        events,
        "/refused.html",
        f"""<h1 data-current-article="{START}">A host page</h1>
<div data-recs="foryou" data-k="3" data-user-token="{TOKEN}"></div>
<script src="/widget.js" async></script>""",
    )
    refused: list[str] = []

    def refuse(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        refused.append(route.request.post_data or "")
        body = {"error": "unauthorized", "message": "token expired"}
        route.fulfill(status=401, json=body)

    page.route("**/v1/recommendations*", refuse)
    page.goto(f"{server}/refused.html")
    wait_state(page, FORYOU, "ready")
    # The page's own article is never recommended on it: excluded in both requests.
    assert [json.loads(body) for body in refused] == [
        {"user_token": TOKEN, "k": 3, "exclude": [START]}
    ]
    gets = [r for r in events.requests if r.method == "GET" and r.path == "/v1/recommendations"]
    assert [r.query for r in gets] == [f"k=3&exclude={START}"]
    assert page.locator(f"{FORYOU} a.recs__link").count() >= 1
    assert page.evaluate("RelatedStories.history()") == []
    assert_token_only_in_bodies(session, events)
    assert session.script_errors() == []


def test_data_user_id_is_ignored_with_one_warning(
    server: str, session: Session, events: EventRecorder
) -> None:
    """The old attribute names a reader without proof: no longer read. The boxes use the
    browser's own history, nothing names the reader, and the page is told once."""
    page = session.page
    host_page(
        events,
        "/old.html",
        f"""<h1 data-current-article="{START}">A host page</h1>
<div data-recs="related" data-article-id="{START}" data-k="4" data-user-id="reader-7"></div>
<div data-recs="foryou" data-k="3" data-user-id="reader-7"></div>{STAY}
<script src="/widget.js" data-user-id="reader-7" async></script>""",
    )
    page.goto(f"{server}/old.html")
    wait_state(page, RELATED, "ready")
    wait_state(page, FORYOU, "ready")
    assert page.evaluate("RelatedStories.history()") == [START]
    assert events.posts("/v1/recommendations") == []
    gets = [r for r in events.requests if r.method == "GET" and r.path == "/v1/recommendations"]
    shown = ",".join([START, *card_ids(page, RELATED)])
    assert [r.query for r in gets] == [f"k=3&exclude={shown}&history={START}"]
    first = card_ids(page, RELATED)[0]
    page.locator(f"{RELATED} a.recs__link").first.click()
    clicked = {"article_id": first, "type": "click", "position": 0, "source": "related"}
    assert events.wait_for(clicked), events.events
    assert events.events == [clicked]  # no view went to the server; no reader named
    warnings = [w for w in session.warnings if "[recs]" in w]
    assert len(warnings) == 1 and "data-user-token" in warnings[0], session.warnings
    assert session.script_errors() == []


def test_one_page_never_repeats_a_story_and_marks_the_sponsored_card(
    demo_live: Server, session: Session
) -> None:
    server, recorder = demo_live.url, demo_live.recorder
    page = session.page
    for article in (START, "reuters-873", "reuters-1072"):
        recorder.clear()
        page.goto(f"{server}/demo/articles/{article}")
        # Scrolled straight to "for you": the related box above still loads first.
        wait_state(page, FORYOU, "ready")
        wait_state(page, RELATED, "ready")
        related, foryou = card_ids(page, RELATED), card_ids(page, FORYOU)
        assert len(related) == K and len(foryou) == K
        on_page = [article, *related, *foryou]
        assert len(set(on_page)) == len(on_page), on_page
        # The second box asked without what the first shows and the page's own article.
        asked = [r for r in recorder.requests if r.path == "/v1/recommendations"]
        assert asked and f"exclude={article}" in asked[-1].query
        assert all(i in asked[-1].query for i in related)
        # The pinned sponsored story: second in the first box, marked in words.
        card = page.locator(f"{RELATED} a.recs__link[data-recs-sponsored]")
        assert card.count() == 1
        assert card.get_attribute("data-recs-id") == "demo-sponsored-1"
        assert card.get_attribute("data-recs-position") == "1"
        assert card.locator(".recs__kicker").inner_text().lower() == "sponsored"
        assert page.locator(f"{FORYOU} a[data-recs-sponsored]").count() == 0
    screenshot(page, "demo-sponsored.png")
    assert session.script_errors() == []
