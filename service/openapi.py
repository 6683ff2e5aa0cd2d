"""``GET /openapi.json``: the API description (``service/openapi.json``), served as is."""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Flask, Response, current_app

bp = Blueprint("openapi", __name__)

EXTENSION = "recs_openapi"


def spec_bytes() -> bytes:
    """The packaged OpenAPI document."""
    return resources.files("service").joinpath("openapi.json").read_bytes()


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    response = Response(current_app.extensions[EXTENSION], mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def init_app(app: Flask) -> None:
    """Read the document once at start and register the route."""
    app.extensions[EXTENSION] = spec_bytes()
    app.register_blueprint(bp)
