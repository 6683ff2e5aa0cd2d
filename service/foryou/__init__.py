""" "Recommended for you": ``/v1/recommendations``, ``/v1/events`` and ``/v1/users/<id>``.

``settings`` (config and shared state), ``parsing`` (requests and reader tokens), ``routes``
(recommendations) and ``events`` (events and erasure). See docs/recommendations.md.
"""

from __future__ import annotations

from flask import Flask

from service.foryou import events, routes
from service.foryou.settings import EXTENSION, bp, build_state

__all__ = ["EXTENSION", "events", "init_app", "routes"]


def init_app(app: Flask) -> None:
    """Read the settings and register the routes."""
    app.extensions[EXTENSION] = build_state(app)
    app.register_blueprint(bp)
