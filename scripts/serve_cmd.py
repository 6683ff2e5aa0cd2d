"""``recs serve``: run the API on Flask's development server (production: gunicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from flask import Flask

from scripts.common import CliError
from scripts.options import model_dir_option, redis_url_option


def build_app(model_dir: Path | None, redis_url: str | None) -> Flask:
    """The API app for the given source (options win over RECS_* variables)."""
    from service import ConfigError, create_app

    config: dict[str, Any] = {}
    if model_dir is not None:
        config["MODEL_DIR"] = str(model_dir)
        if redis_url is None:
            # An explicit --model means embedded mode, even if RECS_REDIS_URL is set.
            config["REDIS_URL"] = None
    if redis_url is not None:
        config["REDIS_URL"] = redis_url
    try:
        return create_app(config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@model_dir_option("Serve this model directory without Redis (env RECS_MODEL_DIR).")
@redis_url_option("Serve what 'recs publish' wrote to this Redis (env RECS_REDIS_URL).")
@click.option("--debug", is_flag=True, help="Flask debug mode: reloader and tracebacks.")
def serve(host: str, port: int, model_dir: Path | None, redis_url: str | None, debug: bool) -> None:
    """Run the HTTP API for development (use gunicorn in production)."""
    app = build_app(model_dir, redis_url)
    url = app.config.get("REDIS_URL")
    # Host and port only: the URL may carry a password.
    parts = urlsplit(str(url)) if url else None
    source = f"Redis at {parts.hostname}:{parts.port or 6379}" if parts else app.config["MODEL_DIR"]
    click.echo(f"serving {source} on http://{host}:{port} (development server)", err=True)
    app.run(host=host, port=port, debug=debug, use_reloader=debug)
