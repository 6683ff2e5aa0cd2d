"""The baseline of ``benchmarks/bench_serve.py``: a bare Flask app answering one Redis GET.

``GET /bare/<article_id>`` returns the bytes stored under ``$BENCH_PAYLOAD_KEY`` in
``$BENCH_REDIS_URL`` as JSON (the id is ignored). It is what any Flask + Redis endpoint costs
at least: routing, one round trip, a response. Run it with the API's gunicorn settings:
``gunicorn -c gunicorn.conf.py 'benchmarks.bench_bare_app:create_app()'``.
"""

from __future__ import annotations

import os

from flask import Flask, Response

from service.redis.client import connect


def create_app() -> Flask:
    """The bare app, on its own connection pool (created per worker: preload_app is off)."""
    client = connect(os.environ["BENCH_REDIS_URL"], timeout=0.5)
    key = os.environ.get("BENCH_PAYLOAD_KEY", "bench:payload")
    app = Flask(__name__)

    @app.get("/bare/<article_id>")
    def bare(article_id: str) -> Response:
        data = client.get(key)
        if data is None:
            return Response(b'{"error":"not_found"}', status=404, mimetype="application/json")
        return Response(data, mimetype="application/json")

    return app
