"""``GET /widget.js``: the embeddable widget (``service/static/widget.js``), cache-friendly.

The file is read, hashed and gzipped once at start. ``/widget.js`` is cached for a day (a
deploy reaches every site within a day, revalidated cheaply by ETag); ``/widget.js?v=VERSION``
with the file's own version is immutable for a year, for sites that pin a version.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from flask import Blueprint, Flask, Response, current_app, request

bp = Blueprint("widget", __name__)

EXTENSION = "recs_widget"
MIMETYPE = "text/javascript"
CACHE_CONTROL = "public, max-age=86400, stale-while-revalidate=604800"
CACHE_CONTROL_PINNED = "public, max-age=31536000, immutable"
_VERSION = re.compile(rb'var VERSION = "([0-9A-Za-z.+-]+)";')


@dataclass(frozen=True, slots=True)
class WidgetFile:
    """The widget script as served: plain and gzipped bodies, version and validator."""

    body: bytes
    gzipped: bytes
    version: str
    etag: str


def load_widget() -> WidgetFile:
    """Read the packaged script; a missing version constant is a packaging bug."""
    body = resources.files("service").joinpath("static", "widget.js").read_bytes()
    match = _VERSION.search(body)
    if match is None:
        raise RuntimeError("service/static/widget.js has no 'var VERSION = \"...\";' line")
    version = match.group(1).decode()
    digest = hashlib.blake2b(body, digest_size=8).hexdigest()
    # mtime=0: the same file always gzips to the same bytes (stable Content-Length).
    gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    return WidgetFile(body, gzipped, version, f"{version}-{digest}")


def _widget() -> WidgetFile:
    widget: WidgetFile = current_app.extensions[EXTENSION]
    return widget


@bp.get("/widget.js")
def script() -> Response:
    """The widget script (gzip when accepted; 304 on a matching If-None-Match)."""
    widget = _widget()
    pinned = request.args.get("v") == widget.version
    response = Response(mimetype=MIMETYPE)
    # Weak: the gzipped and the plain body are two encodings of the same script.
    response.headers["ETag"] = f'W/"{widget.etag}"'
    response.headers["Cache-Control"] = CACHE_CONTROL_PINNED if pinned else CACHE_CONTROL
    response.vary.add("Accept-Encoding")
    # Sites are other origins: allow embedding under Cross-Origin-Embedder-Policy too.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.if_none_match.contains_weak(widget.etag):
        response.status_code = 304
        return response
    if request.accept_encodings["gzip"] > 0:
        response.set_data(widget.gzipped)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response.set_data(widget.body)
    return response


def init_app(app: Flask) -> None:
    """Load the script once and register the route."""
    app.extensions[EXTENSION] = load_widget()
    app.register_blueprint(bp)
