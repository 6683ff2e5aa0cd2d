"""Publishing to a real Redis: round trips, atomic flips, rollback, failures and pruning."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from service.redis import keys, publish, retention, versions
from service.redis.client import with_retry
from service.redis.store import RedisStore
from tests.paths import REPO, SAMPLE_ARTICLES

Expected = dict[str, tuple[list[str], list[float]]]


def train(directory: Path, **config: object) -> LoadedModel:
    """Fit the Reuters sample with ``config`` into ``directory`` and load it back."""
    articles = read_articles([SAMPLE_ARTICLES]).articles
    model = RelatedModel(config=ModelConfig(**config)).fit(articles)  # type: ignore[arg-type]
    save_model(model, articles, directory)
    return load_model(directory)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    """Three small models whose lists differ (different k and blend)."""
    root = tmp_path_factory.mktemp("publish-models")
    # Re-ranking costs most of the fit time and changes nothing about publishing.
    return {
        "a": train(root / "a", k=20, rerank=False),
        "b": train(root / "b", k=12, alpha=0.5, rerank=False),
        "c": train(root / "c", k=5, rerank=False),
    }


def expected_lists(loaded: LoadedModel) -> Expected:
    """Each article's neighbour ids and its scores as a reader must see them (quantised)."""
    model = loaded.model
    out: Expected = {}
    for row, article_id in enumerate(model.ids_):
        valid = model.neighbours_[row] >= 0
        ids = [model.ids_[i] for i in model.neighbours_[row][valid]]
        q = keys.quantize_scores(model.scores_[row][valid]).astype(np.float32) / keys.SCORE_SCALE
        out[article_id] = (ids, q.tolist())
    return out


def version_keys(client: redis.Redis, version: str) -> list[bytes]:
    return list(client.scan_iter(match=keys.version_pattern(version), count=1000))


def test_every_neighbour_list_round_trips(redis_client: redis.Redis, models: dict) -> None:
    loaded = models["a"]
    result = publish.publish(redis_client, loaded)
    assert result.version == loaded.version and result.previous is None
    store = RedisStore(redis_client)
    model = loaded.model
    for article_id in model.ids_:
        got = store.neighbours(loaded.version, article_id)
        assert got is not None
        want = model.neighbours(article_id)
        assert [n.id for n in got] == [i for i, _ in want]
        for neighbour, (_, score) in zip(got, want, strict=True):
            assert abs(neighbour.score - score) <= 1 / 65535
    assert store.neighbours(loaded.version, "no-such-article") is None
    assert store.neighbours("20000101T000000Z-nope", model.ids_[0]) is None


def test_metadata_round_trips(redis_client: redis.Redis, models: dict) -> None:
    loaded = models["a"]
    publish.publish(redis_client, loaded)
    store = RedisStore(redis_client)
    ids = [a.id for a in loaded.articles]
    metas = store.articles(loaded.version, [*ids, "unknown-id"])
    assert len(metas) == len(ids) + 1 and metas[-1] is None
    tags = loaded.model.tags_
    for article, meta in zip(loaded.articles, metas, strict=False):
        assert meta is not None
        assert (meta.id, meta.title, meta.url, meta.section) == (
            article.id,
            article.title,
            article.url,
            article.section,
        )
        assert (meta.published_at, meta.image_url, meta.tags) == (
            article.published_at,
            article.image_url,
            article.tags,
        )
        weights = [tags.weight(t) for t in meta.tag_keys]
        assert all(w > 0 for w in weights)
        assert weights == sorted(weights, reverse=True)
        analyzed = tags.analyze(article.tags, tags.vocabulary_)
        assert set(meta.tag_keys) == {t for t in analyzed if tags.weight(t) > 0}
    assert any(m is not None and m.tag_keys for m in metas)
    assert store.articles(loaded.version, []) == []


def test_version_info_is_stored(redis_client: redis.Redis, models: dict) -> None:
    loaded = models["a"]
    publish.publish(redis_client, loaded)
    info = versions.live_info(redis_client)
    assert info is not None
    counts = loaded.manifest["counts"]
    assert info["version"] == loaded.version
    assert info["built_at"] == loaded.manifest["created_at"]
    assert info["articles"] == len(loaded.articles) == info["next_row"]
    assert info["k"] == 20 and info["coverage"] == pytest.approx(counts["coverage"])
    assert info["score_quantiles"] == counts["score_quantiles"]
    assert info["published_at"] and info["previous"] is None and info["layout"] == keys.LAYOUT
    current = RedisStore(redis_client).current_version()
    assert current is not None
    assert (current.version, current.articles, current.k) == (loaded.version, info["articles"], 20)
    assert current.published_at == info["published_at"]


def test_publishing_the_live_version_again_changes_nothing(
    redis_client: redis.Redis, models: dict
) -> None:
    publish.publish(redis_client, models["a"])
    count = redis_client.dbsize()
    again = publish.publish(redis_client, models["a"])
    assert again.already_published and again.previous is None
    assert redis_client.dbsize() == count


def test_readers_never_see_a_mixed_or_missing_list(
    redis_url: str, redis_client: redis.Redis, models: dict
) -> None:
    a, b = models["a"], models["b"]
    expected = {a.version: expected_lists(a), b.version: expected_lists(b)}
    assert expected[a.version] != expected[b.version]
    publish.publish(redis_client, a)
    ids = list(a.model.ids_)
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, int] = {a.version: 0, b.version: 0}

    def reader(seed: int) -> None:
        store = RedisStore(redis_url)
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                # One request: read the pointer once, then only that version's keys.
                current = store.current_version()
                if current is None:
                    failures.append("no current version")
                    return
                article_id = rng.choice(ids)
                got = store.neighbours(current.version, article_id)
                if got is None:
                    failures.append(f"{current.version}/{article_id}: missing list")
                    return
                want_ids, want_scores = expected[current.version][article_id]
                if [n.id for n in got] != want_ids or not np.allclose(
                    [n.score for n in got], want_scores, atol=1e-6
                ):
                    failures.append(f"{current.version}/{article_id}: wrong list")
                    return
                if seen[current.version] % 10 == 0:
                    # Every neighbour named in this version has its metadata in it.
                    metas = store.articles(current.version, [n.id for n in got])
                    if any(m is None for m in metas):
                        failures.append(f"{current.version}/{article_id}: missing metadata")
                        return
                seen[current.version] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(repr(exc))
        finally:
            store.close()

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.1)
        # Slow the write of version b down, so readers run through the whole publish.
        publish.publish(redis_client, b, batch=100, on_batch=lambda _: time.sleep(0.02))
        for _ in range(5):  # then flip back and forth a few times
            time.sleep(0.05)
            publish.rollback(redis_client)
            time.sleep(0.05)
            publish.publish(redis_client, b)
        time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert failures == []
    assert seen[a.version] > 0 and seen[b.version] > 0


def test_rollback_restores_the_previous_version(redis_client: redis.Redis, models: dict) -> None:
    a, b = models["a"], models["b"]
    publish.publish(redis_client, a)
    result = publish.publish(redis_client, b)
    assert result.previous == a.version
    assert publish.rollback(redis_client) == (b.version, a.version)
    store = RedisStore(redis_client)
    current = store.current_version()
    assert current is not None and current.version == a.version
    first = a.model.ids_[0]
    got = store.neighbours(a.version, first)
    assert got is not None and [n.id for n in got] == [i for i, _ in a.model.neighbours(first)]
    rows = versions.list_versions(redis_client)
    assert [(r.version, r.current) for r in rows] == [(b.version, False), (a.version, True)]
    with pytest.raises(publish.PublishError, match="no earlier version"):
        publish.rollback(redis_client)
    assert publish.rollback(redis_client, to=b.version) == (a.version, b.version)
    with pytest.raises(publish.PublishError, match="not published"):
        publish.rollback(redis_client, to="20000101T000000Z-nope")


def test_rollback_with_nothing_published(redis_client: redis.Redis) -> None:
    with pytest.raises(publish.PublishError, match="nothing is published"):
        publish.rollback(redis_client)


class Boom(RuntimeError):
    pass


def test_failed_publish_keeps_the_live_version_and_leaves_no_keys(
    redis_client: redis.Redis, models: dict
) -> None:
    a, b = models["a"], models["b"]
    publish.publish(redis_client, a)
    before = redis_client.dbsize()

    def explode(batch: int) -> None:
        if batch == 3:
            raise Boom("disk on fire")

    with pytest.raises(Boom):
        publish.publish(redis_client, b, batch=100, on_batch=explode)
    assert versions.current_version(redis_client) == a.version
    assert version_keys(redis_client, b.version) == []
    assert redis_client.zcard(keys.PUBLISHING) == 0
    assert redis_client.exists(keys.PUBLISH_LOCK) == 0
    assert redis_client.dbsize() == before
    store = RedisStore(redis_client)
    assert store.neighbours(a.version, a.model.ids_[0]) is not None
    # And the next publish of b works.
    publish.publish(redis_client, b)
    assert versions.current_version(redis_client) == b.version


KILL_SCRIPT = """
import os, sys
import redis
from models.artifact import load_model
from service.redis import publish

def die(batch):
    if batch == 3:
        os._exit(9)  # no cleanup, no finally: like kill -9

client = redis.Redis.from_url(sys.argv[1])
publish.publish(client, load_model(sys.argv[2]), batch=100, on_batch=die)
"""


def test_killed_publish_is_swept_by_the_next_publish(
    redis_url: str, redis_client: redis.Redis, models: dict
) -> None:
    a, b, c = models["a"], models["b"], models["c"]
    publish.publish(redis_client, a)
    run = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, redis_url, str(b.path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 9, run.stderr
    # Half of b is in Redis, marked in progress; a still serves.
    assert len(version_keys(redis_client, b.version)) >= 600
    assert redis_client.zscore(keys.PUBLISHING, b.version) is not None
    assert versions.current_version(redis_client) == a.version
    assert RedisStore(redis_client).neighbours(a.version, a.model.ids_[0]) is not None
    # The dead publisher's lock blocks others until it expires...
    with pytest.raises(publish.PublishError, match="lock held"):
        publish.publish(redis_client, c)
    assert redis_client.pttl(keys.PUBLISH_LOCK) > 0
    redis_client.delete(keys.PUBLISH_LOCK)  # ... which we do not wait LOCK_TTL_MS for
    result = publish.publish(redis_client, c)
    assert result.cleaned == [b.version]
    assert version_keys(redis_client, b.version) == []
    assert redis_client.zcard(keys.PUBLISHING) == 0
    assert [r.version for r in versions.list_versions(redis_client)] == [c.version, a.version]


def test_keep_n_prunes_old_versions(redis_client: redis.Redis, models: dict) -> None:
    a, b, c = models["a"], models["b"], models["c"]
    publish.publish(redis_client, a, keep=2)
    publish.publish(redis_client, b, keep=2)
    result = publish.publish(redis_client, c, keep=2)
    assert result.pruned == [a.version]
    assert version_keys(redis_client, a.version) == []
    assert [r.version for r in versions.list_versions(redis_client)] == [c.version, b.version]
    # keep=1 still keeps the version before the live one (the rollback target).
    result = publish.publish(redis_client, a, keep=1)
    assert result.pruned == [b.version]
    assert [r.version for r in versions.list_versions(redis_client)] == [a.version, c.version]
    assert publish.rollback(redis_client) == (a.version, c.version)
    # After a rollback, the live version and its own previous version are both protected.
    assert retention.prune(redis_client, keep=1) == []
    found = redis_client.keys("rs:v:*:info")
    remaining = {k.decode() if isinstance(k, bytes) else k for k in found}
    assert remaining == {keys.info_key(a.version), keys.info_key(c.version)}


def test_a_held_lock_refuses_a_second_publisher(redis_client: redis.Redis, models: dict) -> None:
    publish.publish(redis_client, models["a"])
    redis_client.set(keys.PUBLISH_LOCK, "someone-else", px=60_000)
    with pytest.raises(publish.PublishError, match="another publish"):
        publish.publish(redis_client, models["b"])
    with pytest.raises(publish.PublishError, match="another publish"):
        publish.rollback(redis_client)
    assert versions.current_version(redis_client) == models["a"].version
    assert redis_client.get(keys.PUBLISH_LOCK) == b"someone-else"


def test_publish_survives_dropped_connections(
    redis_url: str, redis_client: redis.Redis, models: dict
) -> None:
    publisher = redis.Redis.from_url(redis_url)
    killed = []

    def drop_connections(batch: int) -> None:
        if batch in (2, 5):
            # The server closes the publisher's connections; the next batch must be re-sent.
            killed.append(redis_client.client_kill_filter(_type="normal", skipme=True))

    loaded = models["b"]
    publish.publish(publisher, loaded, batch=100, on_batch=drop_connections)
    assert all(n >= 1 for n in killed) and len(killed) == 2
    store = RedisStore(redis_client)
    for article_id, (ids, _) in expected_lists(loaded).items():
        got = store.neighbours(loaded.version, article_id)
        assert got is not None and [n.id for n in got] == ids


def test_redis_dying_mid_publish_leaves_the_live_version(
    tmp_path: Path, models: dict[str, LoadedModel]
) -> None:
    from benchmarks.harness import RedisServer

    # A private server with an append-only file, so it can die and come back with its data.
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    port = server.port
    # As the CLI builds it: no client-side retries under publish's own.
    client = redis.Redis(port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        a, b = models["a"], models["b"]
        publish.publish(client, a)

        def shutdown(batch: int) -> None:
            if batch == 3:
                redis.Redis(port=port).shutdown(nosave=False)

        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            publish.publish(client, b, batch=100, on_batch=shutdown)
        server.wait(timeout=10)
        server.start()  # same port, same append-only file
        # The live version is untouched; b's partial keys are marked for the next sweep.
        assert versions.current_version(client) == a.version
        assert client.zscore(keys.PUBLISHING, b.version) is not None
        got = RedisStore(client).neighbours(a.version, a.model.ids_[0])
        assert got is not None and [n.id for n in got] == expected_lists(a)[a.model.ids_[0]][0]
        client.delete(keys.PUBLISH_LOCK)  # the dead run's lock would expire by itself
        result = publish.publish(client, models["c"])
        assert result.cleaned == [b.version] and version_keys(client, b.version) == []
    finally:
        server.stop()
        client.close()


def test_with_retry_gives_up_after_the_last_attempt() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("reset")
        return "ok"

    assert with_retry(flaky) == "ok" and len(calls) == 3

    def dead() -> None:
        raise redis.TimeoutError("timed out")

    with pytest.raises(redis.TimeoutError):
        with_retry(dead, retries=1)


def test_nothing_published(redis_client: redis.Redis) -> None:
    assert versions.current_version(redis_client) is None
    assert versions.live_info(redis_client) is None
    assert versions.list_versions(redis_client) == []
    assert RedisStore(redis_client).current_version() is None
