"""``recs upsert``, ``recs delete``, ``recs worker`` and ``train --as-of`` through click."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner, Result

from models.artifact import LoadedModel, load_model
from models.incremental.fitted import build_with_fitted
from models.records import Article, read_articles, write_articles_jsonl
from scripts.cli import cli
from service.redis import keys
from service.redis import queue as upd
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.redis.versions import version_info
from service.redis.writer import Writer
from tests.paths import REPO, SAMPLE_ARTICLES
from tests.test_updates import CONFIGS, N, build, client_for, edited, loader

UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def sample() -> list[Article]:
    articles = read_articles([SAMPLE_ARTICLES]).articles[: N + 10]
    return [
        dataclasses.replace(a, section="Markets" if i % 2 else "") for i, a in enumerate(articles)
    ]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = client_for(redis_url)
    yield c
    c.close()


@pytest.fixture
def live(client: redis.Redis, sample: list[Article], tmp_path: Path) -> LoadedModel:
    """A published model stored under a model root as ``<root>/<version>`` (as retrain does)."""
    built = build(tmp_path / "build", sample[:N])
    root = tmp_path / "root"
    root.mkdir()
    path = root / built.version
    shutil.move(built.path, path)
    built.path = path
    publish(client, built)
    return built


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def articles_file(path: Path, articles: list[Article]) -> Path:
    write_articles_jsonl(articles, path)
    return path


def queued(client: redis.Redis) -> int:
    return int(client.xlen(keys.UPDATES))


# ------------------------------------------------------------------------------- with Redis


def test_upsert_without_a_worker_applies_in_process(
    redis_url: str, client: redis.Redis, live: LoadedModel, sample: list[Article], tmp_path: Path
) -> None:
    news = [sample[N], sample[N + 1], edited(sample[3], 3)]
    source = articles_file(tmp_path / "new.jsonl", news)
    result = invoke(
        "upsert", "--articles", source, "--model-root", live.path.parent,
        "--redis-url", redis_url, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "writer" and summary["version"] == live.version
    assert summary["applied"] == 3 and summary["rejected"] == 0 and summary["lists_changed"] >= 3
    store = RedisStore(client)
    assert store.neighbours(live.version, sample[N].id)
    meta = store.articles(live.version, [sample[3].id])[0]
    assert meta is not None and meta.title == news[2].title
    assert not upd.writer_active(client)  # the CLI released the writer lock
    info = version_info(client, live.version)
    assert info is not None and info["upserts"] == "3"


def test_upsert_waits_for_the_running_worker(
    redis_url: str, client: redis.Redis, live: LoadedModel, sample: list[Article], tmp_path: Path
) -> None:
    writer = Writer(client_for(redis_url), loader(live), block_ms=50)
    stop = threading.Event()
    with writer:
        thread = threading.Thread(target=writer.run, args=(stop,))
        thread.start()
        try:
            source = articles_file(tmp_path / "new.jsonl", [sample[N]])
            result = invoke(
                "upsert", "--articles", source, "--model", live.path, "--redis-url", redis_url,
            )  # fmt: skip
        finally:
            stop.set()
            thread.join()
    assert result.exit_code == 0, result.output
    assert "1 applied, 0 rejected" in result.stdout and "(version " in result.stdout
    assert "worker)" in result.stdout
    assert RedisStore(client).neighbours(live.version, sample[N].id)


def test_a_silent_worker_times_out_with_exit_4_and_leaves_the_update_queued(
    redis_url: str, client: redis.Redis, live: LoadedModel, sample: list[Article], tmp_path: Path
) -> None:
    client.set(keys.UPDATE_LOCK, "ghost-writer", px=60_000)
    source = articles_file(tmp_path / "new.jsonl", [sample[N]])
    result = invoke(
        "upsert", "--articles", source, "--model", live.path, "--redis-url", redis_url,
        "--timeout", "0.3",
    )  # fmt: skip
    assert result.exit_code == 4
    assert "timed out after 0.3 s waiting for the update worker" in result.stderr
    assert queued(client) == 1


def test_a_bad_record_exits_2_naming_the_line_and_field_and_queues_nothing(
    redis_url: str, client: redis.Redis, live: LoadedModel, tmp_path: Path
) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"id": "new-1", "title": "Fine"}\n{"id": "new-2", "body": ""}\n')
    result = invoke(
        "upsert", "--articles", source, "--model", live.path, "--redis-url", redis_url,
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"{source}:2: field 'title'" in result.stderr
    assert queued(client) == 0
    # --on-error skip queues the good one and reports the skipped one.
    result = invoke(
        "upsert", "--articles", source, "--model", live.path, "--redis-url", redis_url,
        "--on-error", "skip",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped:" in result.stderr and "1 applied" in result.stdout


def test_unreachable_redis_exits_4(live: LoadedModel, sample: list[Article], tmp_path: Path):
    source = articles_file(tmp_path / "new.jsonl", [sample[N]])
    result = invoke(
        "upsert", "--articles", source, "--model", live.path, "--redis-url", UNREACHABLE,
    )  # fmt: skip
    assert result.exit_code == 4 and "cannot reach Redis" in result.stderr
    result = invoke("delete", "reuters-1", "--model", live.path, "--redis-url", UNREACHABLE)
    assert result.exit_code == 4


def test_a_model_of_another_version_exits_2_and_queues_nothing(
    redis_url: str, client: redis.Redis, live: LoadedModel, sample: list[Article], tmp_path: Path
) -> None:
    other = build(tmp_path / "other", sample[:N], CONFIGS["rerank"])
    source = articles_file(tmp_path / "new.jsonl", [sample[N]])
    result = invoke(
        "upsert", "--articles", source, "--model", other.path, "--redis-url", redis_url,
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"is version {other.version}, but the live version is {live.version}" in result.stderr
    assert "--model-root ROOT" in result.stderr  # a retrained --model dir: how to follow versions
    assert queued(client) == 0
    result = invoke(
        "upsert", "--articles", source, "--model", other.path, "--model-root", tmp_path,
        "--redis-url", redis_url,
    )  # fmt: skip
    assert result.exit_code == 2 and "exactly one of --model" in result.stderr


def test_delete_through_redis_and_an_unknown_id_is_rejected(
    redis_url: str, client: redis.Redis, live: LoadedModel
) -> None:
    victim = live.articles[7].id
    result = invoke("delete", victim, "--model", live.path, "--redis-url", redis_url)
    assert result.exit_code == 0, result.output
    assert RedisStore(client).neighbours(live.version, victim) is None
    result = invoke("delete", "no-such-id", "--model", live.path, "--redis-url", redis_url)
    assert result.exit_code == 2
    assert "rejected: delete no-such-id: unknown article id" in result.stderr
    assert "0 applied, 1 rejected" in result.stdout
    result = invoke("delete", "bad id", "--model", live.path, "--redis-url", redis_url)
    assert result.exit_code == 2 and "field 'id'" in result.stderr


def test_nothing_published_exits_3(redis_url: str, sample: list[Article], tmp_path: Path):
    model = build(tmp_path / "m", sample[:N])
    result = invoke("delete", "reuters-1", "--model", model.path, "--redis-url", redis_url)
    assert result.exit_code == 3 and "nothing is published" in result.stderr


def test_worker_once_applies_the_queue_and_refuses_a_wrong_model(
    redis_url: str, client: redis.Redis, live: LoadedModel, sample: list[Article], tmp_path: Path
) -> None:
    entry = upd.enqueue_upsert(client, sample[N], by="api")
    result = invoke(
        "worker", "--redis-url", redis_url, "--model-root", live.path.parent, "--once",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ack = upd.wait_applied(client, entry, 1.0)
    assert ack is not None and ack["status"] == "applied" and ack["version"] == live.version
    assert not upd.writer_active(client)

    other = build(tmp_path / "other", sample[:N], CONFIGS["rerank"])
    result = invoke("worker", "--redis-url", redis_url, "--model", other.path, "--once")
    assert result.exit_code == 3
    assert f"is version {other.version}, but the live version is {live.version}" in result.stderr
    result = invoke("worker", "--redis-url", redis_url, "--model-root", tmp_path, "--once")
    assert result.exit_code == 3 and "no model directory for the live version" in result.stderr

    client.set(keys.UPDATE_LOCK, "ghost-writer", px=60_000)
    result = invoke("worker", "--redis-url", redis_url, "--model", live.path, "--once")
    assert result.exit_code == 3 and "another update writer holds" in result.stderr


def test_worker_waits_for_a_version_survives_a_flushall_and_stops_on_sigterm(
    redis_url: str, client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    built = build(tmp_path / "build", sample[:N])
    root = tmp_path / "root"
    root.mkdir()
    shutil.move(built.path, root / built.version)
    built.path = root / built.version
    log = tmp_path / "worker.log"
    command = [
        sys.executable, "-c", "from scripts.cli import main; main()",
        "worker", "--redis-url", redis_url, "--model-root", str(root),
    ]  # fmt: skip
    with open(log, "wb") as out:
        worker = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        # Nothing is published: the worker logs that once and keeps waiting.
        wait_for_log(log, "nothing is published yet; waiting for a version", worker)
        time.sleep(1.0)
        assert worker.poll() is None
        publish(client, built)
        entry = upd.enqueue_upsert(client, sample[N], by="api")
        ack = upd.wait_applied(client, entry, 20.0)
        assert ack is not None and ack["status"] == "applied" and ack["version"] == built.version
        # Redis emptied under it: back to waiting, lock taken again, no exit.
        client.flushall()
        wait_for_log(log, f"live version {built.version} is gone", worker)
        wait_for_log(log, "took it again", worker)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert text.count("nothing is published yet") == 1
    assert "update writer stopped" in text and "Traceback" not in text
    assert client.get(keys.UPDATE_LOCK) is None


def wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while text not in path.read_text():
        assert process.poll() is None, path.read_text()
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


# ------------------------------------------------------------------------------- model dir


def test_without_redis_the_model_directory_is_updated_in_place(
    sample: list[Article], tmp_path: Path
) -> None:
    base = build(tmp_path / "m", sample[:N])
    source = articles_file(tmp_path / "new.jsonl", [sample[N], sample[N + 1], edited(sample[2], 2)])
    result = invoke("upsert", "--articles", source, "--model", base.path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "model-dir" and summary["applied"] == 3
    result = invoke("delete", sample[5].id, "--model", base.path)
    assert result.exit_code == 0, result.output

    updated = load_model(base.path)
    assert updated.version == base.version
    assert updated.manifest["source_as_of"] == base.manifest["source_as_of"]
    assert updated.manifest["incremental"]["upserts"] == 3
    assert updated.manifest["incremental"]["deletes"] == 1
    ids = [a.id for a in updated.articles]
    assert sample[N].id in ids and sample[5].id not in ids and len(ids) == N + 1
    assert next(a for a in updated.articles if a.id == sample[2].id).section == "Business"
    want_ids, neighbours, scores = build_with_fitted(updated.model, updated.articles)
    assert want_ids == ids
    np.testing.assert_array_equal(updated.model.neighbours_, neighbours)
    np.testing.assert_allclose(updated.model.scores_, scores, atol=1e-6)

    result = invoke("delete", "no-such-id", "--model", base.path)
    assert result.exit_code == 2 and "unknown article id" in result.stderr
    result = invoke("upsert", "--articles", source, "--model-root", tmp_path)
    assert result.exit_code == 2 and "without --redis-url, give --model" in result.stderr


# ------------------------------------------------------------------------------- train


def test_train_records_when_its_input_was_read(tmp_path: Path, sample: list[Article]) -> None:
    source = articles_file(tmp_path / "a.jsonl", sample[:60])
    other = articles_file(tmp_path / "b.jsonl", sample[60:80])
    os.utime(source, (1_700_000_000, 1_700_000_000))
    os.utime(other, (1_700_000_900, 1_700_000_900))
    result = invoke("train", "--articles", source, "--articles", other, "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    as_of = datetime.fromtimestamp(1_700_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert load_model(tmp_path / "m").manifest["source_as_of"] == as_of
    result = invoke(
        "train", "--articles", source, "--out", tmp_path / "n", "--as-of", "2024-05-01T10:00+02:00"
    )
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "n").manifest["source_as_of"] == "2024-05-01T08:00:00Z"
    result = invoke("train", "--articles", source, "--out", tmp_path / "o", "--as-of", "soon")
    assert result.exit_code == 2 and "--as-of" in result.stderr
