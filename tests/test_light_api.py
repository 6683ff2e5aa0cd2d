"""The API process in Redis mode never imports the training stack.

A gunicorn worker serving from Redis needs Flask, redis-py and numpy; scikit-learn, scipy,
numba and sparse_dot_topn would add seconds to every worker start and hundreds of MB to every
worker. The check runs in a fresh interpreter: this test session has long imported them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from models.artifact import LoadedModel
from tests.paths import REPO

# jsonschema too: only an admin write validates a rule (service/rules/schema.py), never /related.
HEAVY = ("sklearn", "scipy", "numba", "sparse_dot_topn", "jsonschema")

# Runs in the child: build the app, serve /related and "for you" (a history, an event, a
# reader's own history), then name the heavy modules that got imported.
CHILD = """
import json, sys, time
from service import create_app
from service.tokens import sign

url, ids, heavy = json.loads(sys.argv[1])
key = "light-api-test-signing-key-0123456789"
app = create_app({
    "TESTING": True, "REDIS_URL": url, "MODEL_DIR": None, "USER_SIGNING_KEY": key,
    "EVENTS_RATE_LIMIT": "off", "RECOMMENDATIONS_RATE_LIMIT": "off",
})
client = app.test_client()
token = sign(key, "reader-1", int(time.time()) + 3600)
statuses = [
    client.get(f"/v1/articles/{ids[0]}/related?k=5").status_code,
    client.post("/v1/recommendations", json={"history": ids[:3], "k": 5}).status_code,
    client.get(f"/v1/recommendations?history={ids[1]}&k=5").status_code,
    client.post("/v1/events", json={"article_id": ids[0], "type": "view"}).status_code,
    client.post("/v1/events", json={"user_token": token, "article_id": ids[1]}).status_code,
    client.post("/v1/recommendations", json={"user_token": token, "k": 5}).status_code,
]
print(json.dumps({"statuses": statuses, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_redis_mode_api_imports_no_training_library(published: str, loaded: LoadedModel) -> None:
    ids = [article.id for article in loaded.articles[:3]]
    # The child's configuration is the one passed here, whatever RECS_* the caller exported.
    env = {name: value for name, value in os.environ.items() if not name.startswith("RECS_")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([published, ids, HEAVY])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200, 200, 202, 202, 200]
    assert report["loaded"] == []
