"""Two gunicorn workers both apply a rule change within a second (RECS_RULES_TTL 0.5 s).

Admin reads go straight to Redis, so what each worker's rule cache holds is read from the
``X-Recs-Rules`` header of its /related answers; gunicorn's access log names the worker (pid)
that answered each numbered request.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

from benchmarks.harness import Processes, api_env, start_gunicorn
from models.artifact import LoadedModel
from tests.service_fixtures import ADMIN_TOKEN

WINDOW_S = 1.0
LOG_FORMAT = "rules-probe %(p)s %(q)s %({x-recs-rules}o)s"


def test_two_workers_see_a_rule_change_within_a_second(
    published: str, loaded: LoadedModel, tmp_path: Path
) -> None:
    procs = Processes()
    env = api_env({"REDIS_URL": published, "ADMIN_TOKEN": ADMIN_TOKEN, "RULES_TTL": 0.5})
    log_path = tmp_path / "gunicorn.log"
    sent: list[tuple[int, float, str]] = []  # request number, seconds after the PUT, seq
    with open(log_path, "wb") as log:
        base, server = start_gunicorn(
            procs,
            env,
            workers=2,
            threads=1,
            options=["--access-logformat", LOG_FORMAT],
            stdout=log,
        )
        try:
            url = f"{base}/v1/articles/{loaded.articles[0].id}/related?k=3"

            def ask(number: int) -> str:
                with urllib.request.urlopen(f"{url}&n={number}", timeout=5) as response:
                    return str(response.headers["X-Recs-Rules"])

            assert {ask(n) for n in range(40)} == {"0"}  # both workers warm, no rules
            request = urllib.request.Request(
                f"{base}/v1/rules/takedown",
                data=json.dumps({"hide": [loaded.articles[1].id]}).encode(),
                method="PUT",
                headers={
                    "Authorization": f"Bearer {ADMIN_TOKEN}",
                    "Content-Type": "application/json",
                },
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 201
            stored = time.monotonic()
            number = 1000
            while time.monotonic() - stored < WINDOW_S + 0.6:
                seq = ask(number)
                sent.append((number, time.monotonic() - stored, seq))
                number += 1
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(40)  # its access log is complete once it exited
            procs.stop_all()
    worker_of = {
        int(match[2]): int(match[1])
        for match in re.finditer(r"rules-probe <?(\d+)>? k=3&n=(\d+) (\S+)", log_path.read_text())
    }
    late = [(worker_of[n], seq) for n, elapsed, seq in sent if elapsed >= WINDOW_S]
    workers = {pid for pid, _ in late}
    assert len(workers) == 2, f"one worker answered everything after {WINDOW_S} s: {workers}"
    assert {seq for _, seq in late} == {"1"}, late
    # How long each worker took, for the report.
    first_new = {}
    for n, elapsed, seq in sent:
        if seq == "1":
            first_new.setdefault(worker_of[n], elapsed)
    assert len(first_new) == 2 and max(first_new.values()) < WINDOW_S, first_new
    print(f"rule change seen by each worker after (s): {sorted(first_new.values())}")
