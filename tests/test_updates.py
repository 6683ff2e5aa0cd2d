"""The update queue and its writer against a real Redis: oracle, delete, concurrency, replays."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.incremental.fitted import build_with_fitted
from models.model import RelatedModel
from models.records import Article, published_timestamp, read_articles
from service.redis import keys
from service.redis import queue as upd
from service.redis.apply import WriterError
from service.redis.entries import parse_entry
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.redis.versions import version_info
from service.redis.writer import LOCK_TTL_MS, MAX_IDLE_WAIT_S, Writer, WriterLock
from tests.paths import SAMPLE_ARTICLES

N, M = 120, 16
CONFIGS = {
    "plain": ModelConfig(k=8, rerank=False),
    "rerank": ModelConfig(k=8, rerank_components=16, rerank_pool=24),
}
BUILT = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)
SECTIONS = ("Markets", "World", "")


# ------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sample() -> list[Article]:
    """The first sample articles, with sections (some empty) the sample lacks."""
    articles = read_articles([SAMPLE_ARTICLES]).articles[: N + 3 * M]
    return [dataclasses.replace(a, section=SECTIONS[i % 3]) for i, a in enumerate(articles)]


def build(
    path: Path,
    articles: list[Article],
    config: ModelConfig = CONFIGS["plain"],
    *,
    as_of: datetime | None = BUILT,
    created: datetime = BUILT,
) -> LoadedModel:
    """Fit, save and load a model directory (the writer reads models from disk)."""
    model = RelatedModel(config=config).fit(articles)
    save_model(model, articles, path, created_at=created, source_as_of=as_of)
    return load_model(path)


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10)


def loader(*models: LoadedModel) -> Callable[[str], LoadedModel]:
    by_version = {m.version: m for m in models}

    def load(version: str) -> LoadedModel:
        if version not in by_version:
            raise WriterError(f"no model for {version}")
        return by_version[version]

    return load


def edited(article: Article, i: int) -> Article:
    """An edit: new words (some unknown to the model), another section."""
    return dataclasses.replace(
        article,
        title=f"{article.title} revised zorblax{i}",
        body=f"{article.body} update quuxification{i} oil prices",
        section="Business",
    )


def live_articles(writer: Writer, current: dict[str, Article]) -> list[Article]:
    """The live articles in the index's row order (the order of ties in a full build)."""
    assert writer.index is not None
    return [current[i] for i in writer.index.ids]


def assert_redis_matches_full_build(
    client: redis.Redis, version: str, model: RelatedModel, articles: list[Article]
) -> None:
    """Every list read through the API's store equals a full build with the fitted model."""
    store = RedisStore(client)
    ids, neighbours, scores = build_with_fitted(model, articles)
    assert {k.decode() for k in client.hkeys(keys.index_key(version))} == set(ids)
    for row, article_id in enumerate(ids):
        got = store.neighbours(version, article_id)
        assert got is not None, article_id
        want = [
            (ids[c], float(s)) for c, s in zip(neighbours[row], scores[row], strict=True) if c >= 0
        ]
        assert [n.id for n in got] == [w[0] for w in want], article_id
        np.testing.assert_allclose([n.score for n in got], [w[1] for w in want], atol=1e-4)


def run_once(writer: Writer) -> None:
    writer.run(once=True)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = client_for(redis_url)
    yield c
    c.close()


# ------------------------------------------------------------------------------- queue side


def test_enqueue_writes_one_stream_entry_per_update(client: redis.Redis, sample: list[Article]):
    article = sample[0]
    first = upd.enqueue_upsert(client, article, by="api")
    second = upd.enqueue_delete(client, "reuters-9", by="cli")
    entries = client.xrange(keys.UPDATES)
    assert [e[0].decode() for e in entries] == [first, second]
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields["op"] == "upsert" and fields["id"] == article.id and fields["by"] == "api"
    assert json.loads(fields["article"]) == article.to_dict()
    assert '": ' not in fields["article"]  # compact JSON
    datetime.strptime(fields["at"], "%Y-%m-%dT%H:%M:%SZ")
    fields = {k.decode(): v.decode() for k, v in entries[1][1].items()}
    assert fields == {"op": "delete", "id": "reuters-9", "at": fields["at"], "by": "cli"}
    with pytest.raises(ValueError):
        upd.enqueue_delete(client, "bad id!", by="api")
    with pytest.raises(ValueError):
        upd.enqueue_delete(client, "reuters-1", by="cron")


def test_wait_applied_returns_the_ack_or_none_on_timeout(redis_url: str) -> None:
    # A client with the API's short socket timeout still waits longer than it.
    short = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    started = time.monotonic()
    assert upd.wait_applied(short, "1-0", 0.5) is None
    assert 0.45 <= time.monotonic() - started < 2
    result = {"entry": "2-0", "status": "applied"}
    short.lpush(keys.ack_key("2-0"), json.dumps(result))
    assert upd.wait_applied(short, "2-0", 1.0) == result
    assert short.exists(keys.ack_key("2-0")) == 0  # consumed


def test_writer_lock_is_exclusive(client: redis.Redis) -> None:
    assert not upd.writer_active(client)
    first, second = WriterLock(client), WriterLock(client)
    assert first.acquire()
    try:
        assert upd.writer_active(client)
        assert not second.acquire()
        assert 0 < client.pttl(keys.UPDATE_LOCK) <= LOCK_TTL_MS
    finally:
        first.release()
    assert not upd.writer_active(client)
    assert second.acquire()
    second.release()


def test_a_lost_lock_is_noticed_by_the_refresher(client: redis.Redis) -> None:
    lock = WriterLock(client, refresh_s=0.05)
    assert lock.acquire()
    client.set(keys.UPDATE_LOCK, "someone-else")
    assert lock.lost.wait(2)
    lock.release()
    assert client.get(keys.UPDATE_LOCK) == b"someone-else"  # not ours: left alone


def test_drift_reports_the_share_of_updates_since_the_build() -> None:
    info = {"articles": "110", "base_articles": "100", "upserts": "7", "deletes": "3"}
    assert upd.drift(info, 0.1) == {
        "upserts": 7,
        "deletes": 3,
        "base_articles": 100,
        "share": 0.1,
        "retrain_due": True,
    }
    assert upd.drift({b"articles": b"100", b"upserts": b"2"}, 0.1)["retrain_due"] is False
    fresh = upd.drift({"articles": "50"}, 0.1)
    assert fresh == {
        "upserts": 0,
        "deletes": 0,
        "base_articles": 50,
        "share": 0.0,
        "retrain_due": False,
    }


def test_parse_entry_names_the_bad_field() -> None:
    good = {"op": "upsert", "id": "a-1", "article": json.dumps({"id": "a-1", "title": "T"})}
    assert parse_entry("1-0", good).article == Article(id="a-1", title="T")
    cases = {
        "op": {"op": "merge", "id": "a-1"},
        "id": {"op": "delete", "id": "bad id"},
        "article": {"op": "upsert", "id": "a-1", "article": "{not json"},
        "title": {"op": "upsert", "id": "a-1", "article": json.dumps({"id": "a-1"})},
        "tags": {
            "op": "upsert",
            "id": "a-1",
            "article": json.dumps({"id": "a-1", "title": "T", "tags": "x"}),
        },
        "published_at": {
            "op": "upsert",
            "id": "a-1",
            "article": json.dumps({"id": "a-1", "title": "T", "published_at": "soon"}),
        },
    }
    for name, fields in cases.items():
        error = parse_entry("1-0", fields).error
        assert error is not None and error.startswith(f"field '{name}'"), (name, error)
    mismatch = {"op": "upsert", "id": "a-2", "article": good["article"]}
    assert parse_entry("1-0", mismatch).error == "field 'id': differs from the entry's id"


# ------------------------------------------------------------------------------- publish side


def test_publish_records_as_of_and_the_tag_keys_rule(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N], as_of=datetime(2024, 1, 1, 5, 30, tzinfo=UTC))
    assert loaded.manifest["source_as_of"] == "2024-01-01T05:30:00Z"
    publish(client, loaded)
    assert version_info(client, loaded.version)["as_of"] == "2024-01-01T05:30:00Z"  # type: ignore[index]
    # Published metadata carries the one tag-key rule (models/tags.py) for every article.
    metas = [keys.decode_meta(client.get(keys.meta_key(loaded.version, row))) for row in range(N)]
    per_article = [loaded.model.tags_.tag_keys(a.tags) for a in loaded.articles]
    assert per_article == [meta["tag_keys"] for meta in metas]
    # A model saved before source_as_of existed falls back to its build time.
    old = build(tmp_path / "old", sample[:N], as_of=None, created=BUILT + timedelta(hours=1))
    assert "source_as_of" not in old.manifest
    publish(client, old)
    assert version_info(client, old.version)["as_of"] == "2024-01-01T07:00:00Z"  # type: ignore[index]


def _xadd_at(client: redis.Redis, when: datetime, fields: dict[str, str]) -> str:
    entry = f"{int(when.timestamp() * 1000)}-0"
    client.xadd(keys.UPDATES, fields, id=entry)  # type: ignore[arg-type]
    return entry


def _upsert_fields(article: Article) -> dict[str, str]:
    record = json.dumps(article.to_dict(), separators=(",", ":"))
    return {"op": "upsert", "id": article.id, "article": record, "at": "", "by": "cli"}


def test_publish_trims_entries_no_kept_version_replays(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    t0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    old = _xadd_at(client, t0 - timedelta(hours=3), _upsert_fields(sample[N]))
    kept = _xadd_at(client, t0 - timedelta(minutes=30), _upsert_fields(sample[N + 1]))
    first = build(tmp_path / "a", sample[:N], as_of=t0 - timedelta(hours=2))
    publish(client, first)
    # Kept: the trim point is the oldest kept version's as_of minus an hour.
    assert [e[0].decode() for e in client.xrange(keys.UPDATES)] == [old, kept]
    second = build(tmp_path / "b", sample[:N], CONFIGS["rerank"], as_of=t0)
    publish(client, second, keep=1)
    # The version before the live one is always kept (for a rollback): still replayable.
    assert [e[0].decode() for e in client.xrange(keys.UPDATES)] == [old, kept]
    third = build(tmp_path / "c", sample[:N], as_of=t0, created=BUILT + timedelta(hours=1))
    publish(client, third, keep=1)
    assert [e[0].decode() for e in client.xrange(keys.UPDATES)] == [kept]


# ------------------------------------------------------------------------------- the writer


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_upserts_through_redis_match_a_full_build(
    config_name: str, client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    """Oracle: M upserts (new articles and edits) one by one, then every list vs a full build."""
    loaded = build(tmp_path / "m", sample[:N], CONFIGS[config_name])
    publish(client, loaded)
    version = loaded.version
    current = {a.id: a for a in sample[:N]}
    results: list[dict[str, Any]] = []
    writer = Writer(client, loader(loaded), on_result=results.append)
    news = sample[N : N + M - 3]
    edits = [edited(sample[i], i) for i in (3, 5, 7)]  # each one moves to another section
    with writer:
        writer.sync()
        for article in [*news, *edits]:
            entry = upd.enqueue_upsert(client, article, by="api")
            writer.poll(block_ms=0)
            current[article.id] = article
            ack = upd.wait_applied(client, entry, 1.0)
            assert ack is not None and ack == results[-1]
            assert ack["status"] == "applied" and ack["error"] is None
            assert ack["version"] == version and ack["changed"] >= 1 and ack["id"] == article.id
    assert_redis_matches_full_build(client, version, loaded.model, live_articles(writer, current))

    store = RedisStore(client)
    info = version_info(client, version)
    assert info is not None
    assert info["articles"] == info["next_row"] == N + len(news)
    assert info["seq"] == info["upserts"] == str(M)
    assert info["applied"] == results[-1]["entry"]
    assert info["base_articles"] == str(N)
    # Edits kept their rows; new articles got the next ones.
    rows = {k.decode(): int(v) for k, v in client.hgetall(keys.index_key(version)).items()}
    assert [rows[a.id] for a in news] == list(range(N, N + len(news)))
    assert [rows[a.id] for a in edits] == [3, 5, 7]
    # Metadata and "latest" follow every upsert (an edit leaves its old section).
    metas = store.articles(version, [a.id for a in [*news, *edits]])
    for article, meta in zip([*news, *edits], metas, strict=True):
        assert meta is not None and meta.title == article.title and meta.section == article.section
        blob = client.get(keys.meta_key(version, rows[article.id]))
        assert keys.decode_meta(blob)["tag_keys"] == loaded.model.tags_.tag_keys(article.tags)
    latest = {
        k.decode(): s for k, s in client.zrange(keys.latest_key(version), 0, -1, withscores=True)
    }
    assert set(latest) == set(current)
    assert latest[news[0].id] == published_timestamp(news[0].published_at)
    for i, article in zip((3, 5, 7), edits, strict=True):
        old_section = sample[i].section
        if old_section:
            assert client.zscore(keys.latest_section_key(version, old_section), article.id) is None
        assert client.zscore(keys.latest_section_key(version, "business"), article.id) is not None


def test_delete_removes_the_article_from_every_list(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    publish(client, loaded)
    version, model = loaded.version, loaded.model
    # The article held by the most lists.
    counts = np.bincount(model.neighbours_[model.neighbours_ >= 0], minlength=N)
    victim = loaded.articles[int(np.argmax(counts))]
    holders = [
        model.ids_[r] for r in np.flatnonzero((model.neighbours_ == np.argmax(counts)).any(1))
    ]
    assert len(holders) >= 3
    row = loaded.articles.index(victim)
    current = {a.id: a for a in sample[:N]}
    writer = Writer(client, loader(loaded))
    with writer:
        entry = upd.enqueue_delete(client, victim.id, by="api")
        run_once(writer)
    del current[victim.id]
    ack = upd.wait_applied(client, entry, 1.0)
    assert ack is not None and ack["status"] == "applied" and ack["changed"] >= len(holders)

    store = RedisStore(client)
    assert store.neighbours(version, victim.id) is None
    assert client.hget(keys.index_key(version), victim.id) is None
    assert not client.exists(keys.neighbours_key(version, row), keys.meta_key(version, row))
    assert client.zscore(keys.latest_key(version), victim.id) is None
    if victim.section:
        assert client.zscore(keys.latest_section_key(version, victim.section), victim.id) is None
    k = model.cfg.k
    for article_id in current:
        got = store.neighbours(version, article_id)
        assert got is not None and victim.id not in [n.id for n in got]
    # The lists that held it were refilled (a 120-article corpus always has k candidates).
    for holder in holders:
        assert len(store.neighbours(version, holder) or []) == k
    assert_redis_matches_full_build(client, version, model, live_articles(writer, current))
    info = version_info(client, version)
    assert info is not None and info["articles"] == N - 1 and info["deletes"] == "1"


def test_bad_records_and_unknown_ids_are_rejected_without_stopping(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    publish(client, loaded)
    bad = {
        "title": {"op": "upsert", "id": "x-1", "article": json.dumps({"id": "x-1"})},
        "id": {"op": "upsert", "id": "x 1", "article": json.dumps({"id": "x 1", "title": "t"})},
        "op": {"op": "rename", "id": "x-1"},
    }
    entries = {name: client.xadd(keys.UPDATES, fields).decode() for name, fields in bad.items()}  # type: ignore[arg-type]
    unknown = upd.enqueue_delete(client, "no-such-article", by="api")
    good = upd.enqueue_upsert(client, sample[N], by="api")
    with Writer(client, loader(loaded)) as writer:
        run_once(writer)
    for name, entry in entries.items():
        ack = upd.wait_applied(client, entry, 1.0)
        assert ack is not None and ack["status"] == "rejected" and ack["changed"] == 0
        assert ack["error"].startswith(f"field '{name}'")
    ack = upd.wait_applied(client, unknown, 1.0)
    assert ack is not None and ack["status"] == "rejected" and ack["error"] == "unknown article id"
    ack = upd.wait_applied(client, good, 1.0)
    assert ack is not None and ack["status"] == "applied"
    info = version_info(client, loaded.version)
    assert info is not None and info["seq"] == "1" and info["applied"] == good


def test_readers_never_see_a_list_between_two_states(
    redis_url: str, client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    """Readers hammer the affected ids while the writer applies a stream of upserts."""
    loaded = build(tmp_path / "m", sample[:N], CONFIGS["rerank"])
    publish(client, loaded)
    version = loaded.version
    updates = [*sample[N : N + M], *(edited(sample[i], i) for i in range(0, 30, 3))]
    writer = Writer(client, loader(loaded))
    writer.lock.acquire()
    writer.sync()
    assert writer.index is not None

    # Every list is watched, and the new ids (absent, then present).
    watched = [*loaded.model.ids_, *(a.id for a in sample[N : N + M])]
    store = RedisStore(client)
    states: dict[str, set[tuple[tuple[str, int], ...] | None]] = {i: set() for i in watched}

    def quantised(pairs: list[tuple[str, float]]) -> tuple[tuple[str, int], ...]:
        scores = keys.quantize_scores(np.array([s for _, s in pairs], dtype=np.float32))
        return tuple(zip([n for n, _ in pairs], scores.tolist(), strict=True))

    def record() -> None:
        index = writer.index
        assert index is not None
        for article_id in watched:
            states[article_id].add(
                quantised(index.neighbours(article_id)) if article_id in index else None
            )

    for article_id in watched:  # the published state, as stored
        got = store.neighbours(version, article_id)
        states[article_id].add(
            None if got is None else tuple((n.id, round(n.score * 65535)) for n in got)
        )
    initial = {i: set(found) for i, found in states.items()}
    record()
    writer.on_result = lambda _: record()

    stop = threading.Event()
    seen: list[tuple[str, tuple[tuple[str, int], ...] | None, bool]] = []

    def reader(offset: int) -> None:
        local = RedisStore(redis_url, timeout=5)
        out = []
        position = offset
        while not stop.is_set():
            article_id = watched[position % len(watched)]
            position += 7
            got = local.neighbours(version, article_id)
            out.append(
                (
                    article_id,
                    None if got is None else tuple((n.id, round(n.score * 65535)) for n in got),
                    False,
                )
            )
            read = local.related_articles(version, article_id)
            if read is not None:
                ids = tuple((n.id, round(n.score * 65535)) for n in read.neighbours)
                out.append((article_id, ids, read.complete))
        seen.extend(out)

    threads = [threading.Thread(target=reader, args=(i * 11,)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        for article in updates:
            upd.enqueue_upsert(client, article, by="api")
            writer.poll(block_ms=0)
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        writer.lock.release()

    assert len(seen) > 200
    # The reads overlapped the writes: some saw a list the updates made.
    assert any(state not in initial[article_id] for article_id, state, _ in seen)
    never_absent = set(loaded.model.ids_)
    for article_id, state, _ in seen:
        if state is not None:
            ids = [n for n, _ in state]
            assert len(ids) == len(set(ids)), f"duplicate in {article_id}: {ids}"
        else:
            assert article_id not in never_absent, f"{article_id} vanished"
        assert state in states[article_id], f"{article_id}: a list from no single state"


def test_api_readers_never_see_a_list_between_two_states(
    redis_url: str, client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    """The same through ``GET /related`` (its answer and metadata caches in play), with the
    writer running in its own thread as ``recs worker`` does."""
    from service import create_app

    loaded = build(tmp_path / "m", sample[:N], CONFIGS["rerank"])
    publish(client, loaded)
    new = sample[N : N + M]
    updates = [*new, *(edited(sample[i], i) for i in range(0, 30, 3))]
    watched = [*loaded.model.ids_[:40], *(a.id for a in new)]
    states: dict[str, set[tuple[str, ...] | None]] = {i: set() for i in watched}
    writer = Writer(client, loader(loaded), block_ms=20)

    def record(_: object = None) -> None:
        index = writer.index
        assert index is not None
        for article_id in watched:
            states[article_id].add(
                tuple(n for n, _ in index.neighbours(article_id)) if article_id in index else None
            )

    # VERSION_TTL 0: every request sees the newest seq, the tightest the caches can be.
    app = create_app({"REDIS_URL": redis_url, "VERSION_TTL": 0, "TESTING": True})
    stop = threading.Event()
    seen: list[tuple[str, tuple[str, ...] | None]] = []

    def reader(offset: int) -> None:
        http = app.test_client()
        out = []
        position = offset
        while not stop.is_set():
            article_id = watched[position % len(watched)]
            position += 5
            response = http.get(f"/v1/articles/{article_id}/related?k=50")
            if response.status_code == 404:
                out.append((article_id, None))
            else:
                assert response.status_code == 200, response.get_data(as_text=True)
                out.append((article_id, tuple(i["id"] for i in response.get_json()["items"])))
        seen.extend(out)

    with writer:
        writer.sync()
        record()
        writer.on_result = record
        worker = threading.Thread(target=writer.run, args=(stop,))
        worker.start()
        threads = [threading.Thread(target=reader, args=(i * 3,)) for i in range(3)]
        for thread in threads:
            thread.start()
        try:
            for article in updates:
                entry = upd.enqueue_upsert(client, article, by="api")
                assert upd.wait_applied(client, entry, 10) is not None
        finally:
            stop.set()
            for thread in [*threads, worker]:
                thread.join(30)

    assert len(seen) > 100
    assert any(state is not None and i in {a.id for a in new} for i, state in seen)
    for article_id, state in seen:
        if state is not None:
            assert len(state) == len(set(state)), f"duplicate in {article_id}: {state}"
        else:
            assert article_id not in set(loaded.model.ids_), f"{article_id} vanished"
        assert state in states[article_id], f"{article_id}: a list from no single state"


def test_a_publish_reconciles_updates_made_after_its_input_was_read(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    """Updates enqueued after a build's as_of are re-applied to it when it goes live."""
    t0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    first = build(tmp_path / "a", sample[:N], as_of=t0 - timedelta(hours=2))
    publish(client, first)
    early, late = sample[N], sample[N + 1]
    gone = sample[10]
    # `early` was in the export the new build read; `late` and the delete came after it.
    e1 = _xadd_at(client, t0 - timedelta(hours=1), _upsert_fields(early))
    e2 = _xadd_at(client, t0 + timedelta(minutes=1), _upsert_fields(late))
    e3 = _xadd_at(
        client, t0 + timedelta(minutes=2), {"op": "delete", "id": gone.id, "at": "", "by": "api"}
    )
    second = build(tmp_path / "b", [*sample[:N], early], as_of=t0)
    writer = Writer(client, loader(first, second))
    with writer:
        run_once(writer)
        assert writer.version == first.version
        assert client.hget(keys.index_key(first.version), late.id) is not None
        publish(client, second)
        extra = sample[N + 2]
        e4 = upd.enqueue_upsert(client, extra, by="api")
        run_once(writer)
    assert writer.version == second.version
    version = second.version
    # e2 and e3 replayed onto the new version (e1 is in its input), e4 applied as usual.
    current = {a.id: a for a in [*sample[:N], early, late, extra]}
    del current[gone.id]
    assert_redis_matches_full_build(client, version, second.model, live_articles(writer, current))
    info = version_info(client, version)
    assert info is not None and info["upserts"] == "2" and info["deletes"] == "1"
    assert info["applied"] == e4
    # Each entry was acknowledged once, when first applied (not again by the replay).
    for entry in (e1, e2, e3, e4):
        assert client.llen(keys.ack_key(entry)) == 1
    ack = json.loads(client.lindex(keys.ack_key(e2), 0))  # type: ignore[arg-type]
    assert ack["version"] == first.version


def test_a_version_flip_during_a_write_discards_it_and_follows_the_new_version(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    first = build(tmp_path / "a", sample[:N])
    second = build(tmp_path / "b", sample[:N], CONFIGS["rerank"])
    publish(client, first)
    publish(client, second)
    client.set(keys.CURRENT, first.version)
    writer = Writer(client, loader(first, second))
    with writer:
        writer.sync()
        entry = upd.enqueue_upsert(client, sample[N], by="api")
        # The flip lands between the writer's read of the live version and its write.
        client.set(keys.CURRENT, second.version)
        entries = client.xrange(keys.UPDATES)
        writer._process(entries)
        assert writer.version is None  # the index was ahead of Redis: dropped
        assert client.hget(keys.index_key(first.version), sample[N].id) is None
        run_once(writer)
    assert writer.version == second.version
    ack = upd.wait_applied(client, entry, 1.0)
    assert ack is not None and ack["version"] == second.version
    current = {a.id: a for a in sample[: N + 1]}
    assert_redis_matches_full_build(
        client, second.version, second.model, live_articles(writer, current)
    )


def test_a_restarted_writer_replays_without_writing_again(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    publish(client, loaded)
    version = loaded.version
    before = [*sample[N : N + 4], edited(sample[2], 2)]
    with Writer(client, loader(loaded)) as first:
        for article in before:
            upd.enqueue_upsert(client, article, by="api")
        upd.enqueue_delete(client, sample[4].id, by="api")
        run_once(first)
    info = version_info(client, version)
    assert info is not None and info["seq"] == "6"
    # Sentinels in the metadata the first writer wrote (no later update touches it): a
    # second write of the same entries would replace them.
    index = {k.decode(): int(v) for k, v in client.hgetall(keys.index_key(version)).items()}
    sentinels = {keys.meta_key(version, index[a.id]): b"" for a in before}
    for key in sentinels:
        sentinels[key] = client.get(key)  # type: ignore[assignment]
        client.set(key, b"sentinel")
    # Queued while no writer ran: applied (and acknowledged) after the restart.
    after = upd.enqueue_upsert(client, sample[N + 4], by="api")
    results: list[dict[str, Any]] = []
    with Writer(client, loader(loaded), on_result=results.append) as second:
        run_once(second)
    assert [r["entry"] for r in results] == [after]
    assert client.llen(keys.ack_key(after)) == 1
    for key, stored in sentinels.items():
        assert client.get(key) == b"sentinel"
        client.set(key, stored)
    info = version_info(client, version)
    assert info is not None and info["seq"] == "7" and info["applied"] == after
    current = {a.id: a for a in sample[: N + 5]}
    current.update({a.id: a for a in before})
    del current[sample[4].id]
    assert_redis_matches_full_build(client, version, loaded.model, live_articles(second, current))


def test_identical_upserts_change_nothing(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    publish(client, loaded)
    with Writer(client, loader(loaded)) as writer:
        entry = upd.enqueue_upsert(client, sample[5], by="cli")
        run_once(writer)
    ack = upd.wait_applied(client, entry, 1.0)
    assert ack is not None and ack["status"] == "applied" and ack["changed"] == 0
    info = version_info(client, loaded.version)
    assert info is not None and "seq" not in info and info["applied"] == entry


def test_the_writer_waits_for_a_publish_and_refuses_a_wrong_model(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    other = build(tmp_path / "o", sample[:N], CONFIGS["rerank"])
    writer = Writer(client, loader(loaded), block_ms=50)
    with writer:
        with pytest.raises(WriterError, match="nothing is published"):
            writer.run(once=True)
        assert writer.poll(block_ms=0) == 0
    publish(client, other)
    with Writer(client, loader(loaded)) as wrong:
        with pytest.raises(WriterError, match=f"no model for {other.version}"):
            wrong.run(once=True)


# ------------------------------------------------------------------------------- an emptied Redis


def fast_lock(client: redis.Redis) -> WriterLock:
    """A lock refreshed every 50 ms, so a vanished lock is noticed at once."""
    return WriterLock(client, ttl_ms=5_000, refresh_s=0.05)


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_writer_waits_for_a_version_and_survives_a_flushall(
    client: redis.Redis,
    sample: list[Article],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    writer = Writer(client, loader(loaded), block_ms=20, lock=fast_lock(client))
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with writer:
                writer.run(stop)
        except BaseException as exc:  # the test fails on any
            failures.append(exc)

    def gone() -> list[logging.LogRecord]:
        return [r for r in caplog.records if f"live version {loaded.version} is gone" in r.message]

    caplog.set_level("INFO", logger="service.redis.writer")
    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(0.8)  # several polls of an empty Redis, backing off
        assert thread.is_alive() and not failures
        waiting = [r for r in caplog.records if "nothing is published yet" in r.message]
        assert len(waiting) == 1
        for round_ in range(2):
            publish(client, loaded)
            entry = upd.enqueue_upsert(client, edited(sample[1], round_), by="cli")
            ack = upd.wait_applied(client, entry, 10.0)
            assert ack is not None and ack["status"] == "applied", ack
            assert ack["version"] == loaded.version
            client.flushall()
            # The writer notices, goes back to waiting and takes its vanished lock again.
            wait_for(lambda n=round_ + 1: len(gone()) == n)
            wait_for(lambda: client.get(keys.UPDATE_LOCK) is not None)
            assert thread.is_alive() and not failures
        assert any("had vanished" in r.message for r in caplog.records)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and not failures
    assert client.get(keys.UPDATE_LOCK) is None


def test_a_lock_taken_by_another_writer_is_not_taken_back(
    client: redis.Redis, sample: list[Article], tmp_path: Path
) -> None:
    loaded = build(tmp_path / "m", sample[:N])
    publish(client, loaded)
    writer = Writer(client, loader(loaded), block_ms=20, lock=fast_lock(client))
    with writer:
        client.set(keys.UPDATE_LOCK, "other-host:1:abc", px=60_000)
        with pytest.raises(WriterError, match="lost the update writer lock .* to other-host:1:abc"):
            writer.run(threading.Event())
    assert client.get(keys.UPDATE_LOCK) == b"other-host:1:abc"


def test_the_idle_wait_backs_off_to_a_cap(client: redis.Redis) -> None:
    writer = Writer(client, loader(), block_ms=500)
    stopped = threading.Event()
    stopped.set()  # a set stop event ends each wait at once (as SIGTERM does)
    waits = []
    for _ in range(6):
        writer._wait_for_a_version(None, stopped)
        waits.append(writer._idle_wait)
    assert waits == [0.5, 1.0, 2.0, 4.0, MAX_IDLE_WAIT_S, MAX_IDLE_WAIT_S]
    assert MAX_IDLE_WAIT_S == 5.0
