"""``fit(keep_pools=True)`` / ``recs train --keep-pools``: the build keeps every article's exact
candidates, and the incremental index (what ``recs worker`` runs) loads them instead of its own
exact pass. The oracle is the index that computes its pools itself."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from models.artifact import POOLS, ArtifactError, load_model, save_model
from models.config import ModelConfig
from models.incremental.index import IncrementalIndex
from models.incremental.pools import CandidatePools
from models.model import RelatedModel
from models.records import Article, read_articles
from scripts.cli import cli
from service.redis import queue as upd
from service.redis.versions import current_version
from service.redis.writer import Writer
from tests.paths import SAMPLE_ARTICLES
from tests.test_incremental import CONFIGS, assert_matches_full_build
from tests.test_model import random_articles
from tests.test_updates import assert_redis_matches_full_build, client_for, edited


@pytest.fixture(scope="module")
def sample() -> list[Article]:
    return read_articles([SAMPLE_ARTICLES]).articles


@pytest.fixture
def no_exact_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any index that computes its pools instead of loading them."""

    def refuse(self: CandidatePools, alive: np.ndarray) -> None:
        raise AssertionError("the index recomputed pools the model kept")

    monkeypatch.setattr(CandidatePools, "build", refuse)


def random_operations(
    indexes: list[IncrementalIndex], articles: list[Article], start: int, steps: int
) -> dict[str, Article]:
    """The same inserts, edits and deletes on every index; their lists stay equal throughout."""
    current = {a.id: a for a in articles[:start]}
    rng = np.random.default_rng(11)
    fresh = iter(articles[start:])
    for _ in range(steps):
        op = rng.choice(["insert", "edit", "delete"], p=[0.5, 0.25, 0.25])
        live = sorted(current)
        if op == "insert" or len(live) < 3:
            article = next(fresh)
        elif op == "edit":
            donor = articles[int(rng.integers(len(articles)))]
            old = current[live[int(rng.integers(len(live)))]]
            article = dataclasses.replace(old, body=donor.body, tags=donor.tags)
        else:
            gone = live[int(rng.integers(len(live)))]
            changed = [index.delete(gone) for index in indexes]
            assert all(c == changed[0] for c in changed)
            del current[gone]
            continue
        changed = [index.upsert(article) for index in indexes]
        assert all(c == changed[0] for c in changed)
        current[article.id] = article
        lists = [index.lists() for index in indexes]
        assert all(other == lists[0] for other in lists[1:])
    return current


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_keeping_the_pools_never_changes_the_lists(name: str, sample: list[Article]) -> None:
    plain = RelatedModel(config=CONFIGS[name]).fit(sample)
    kept = RelatedModel(config=CONFIGS[name]).fit(sample, keep_pools=True)
    assert plain.pools_ is None
    assert np.array_equal(kept.neighbours_, plain.neighbours_)
    assert kept.scores_.tobytes() == plain.scores_.tobytes()
    ids, scores = kept.pools_
    index = IncrementalIndex.from_model(plain)
    assert ids.shape == scores.shape == (len(sample), index.pool + index.spare)
    assert ids.dtype == np.int32 and scores.dtype == np.float64
    assert (ids[:, 0] >= 0).mean() > 0.9  # real candidates, not padding


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_kept_pools_are_the_pools_the_index_computes(name: str, sample: list[Article]) -> None:
    computed = IncrementalIndex.from_model(RelatedModel(config=CONFIGS[name]).fit(sample))
    kept = RelatedModel(config=CONFIGS[name]).fit(sample, keep_pools=True)
    ids, scores = kept.pools_
    n = len(sample)
    assert np.array_equal(ids, computed._pools.ids[:n])
    # Bit for bit, NaN padding included: the index compares new scores with these.
    assert scores.tobytes() == computed._pools.scores[:n].tobytes()


@pytest.mark.parametrize(("rerank", "spare"), [(False, None), (True, None), (True, 2), (False, 0)])
def test_index_on_kept_pools_behaves_as_one_that_computed_them(
    rerank: bool, spare: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few words and tags: many exact ties, also at the pool's cut-off, where a kept pool that
    # broke a tie the other way would show.
    articles = random_articles(21, 160)
    config = ModelConfig(
        k=5, text_min_df=1, rerank=rerank, rerank_pool=12, rerank_components=6, min_score=0.0
    )
    computed = IncrementalIndex.from_model(
        RelatedModel(config=config).fit(articles[:60]), spare=spare
    )
    model = RelatedModel(config=config).fit(articles[:60], keep_pools=True)
    builds: list[int] = []
    original = CandidatePools.build
    monkeypatch.setattr(
        CandidatePools, "build", lambda self, alive: builds.append(1) or original(self, alive)
    )
    # A smaller spare than the build kept reads a prefix of each kept pool.
    loaded = IncrementalIndex.from_model(model, spare=spare)
    assert builds == []
    assert loaded.lists() == computed.lists()
    current = random_operations([computed, loaded], articles, 60, 120)
    assert_matches_full_build(loaded, current)


def test_pools_narrower_than_the_index_needs_are_recomputed(
    sample: list[Article], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = RelatedModel(config=CONFIGS["plain"]).fit(sample[:300], keep_pools=True)
    kept_width = model.pools_[0].shape[1]
    builds: list[int] = []
    original = CandidatePools.build
    monkeypatch.setattr(
        CandidatePools, "build", lambda self, alive: builds.append(1) or original(self, alive)
    )
    index = IncrementalIndex.from_model(model, spare=kept_width)  # wider than what was kept
    assert builds == [1]
    assert index._pools.width > kept_width
    assert_matches_full_build(index, {a.id: a for a in sample[:300]})


@pytest.mark.usefixtures("no_exact_pass")
def test_saved_model_carries_its_pools_to_the_worker(sample: list[Article], tmp_path: Path) -> None:
    model = RelatedModel(config=CONFIGS["rerank"]).fit(sample, keep_pools=True)
    manifest = save_model(model, sample, tmp_path / "model")
    assert POOLS in manifest["files"]
    loaded = load_model(tmp_path / "model")
    index = IncrementalIndex.from_model(loaded.model)
    np.testing.assert_array_equal(index.snapshot()[1], model.neighbours_)
    assert_matches_full_build(index, {a.id: a for a in sample})


def test_a_model_without_pools_has_no_pools_file(sample: list[Article], tmp_path: Path) -> None:
    model = RelatedModel(config=CONFIGS["plain"]).fit(sample[:200])
    manifest = save_model(model, sample[:200], tmp_path / "model")
    assert POOLS not in manifest["files"]
    assert not (tmp_path / "model" / POOLS).exists()
    assert load_model(tmp_path / "model").model.pools_file_ is None


def test_a_tampered_or_missing_pools_file_is_refused(sample: list[Article], tmp_path: Path) -> None:
    model = RelatedModel(config=CONFIGS["plain"]).fit(sample[:200], keep_pools=True)
    save_model(model, sample[:200], tmp_path / "model")
    pools = tmp_path / "model" / POOLS
    data = bytearray(pools.read_bytes())
    data[-5] ^= 0xFF
    pools.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"pools\.npz: checksum mismatch"):
        load_model(tmp_path / "model")
    pools.unlink()
    with pytest.raises(ArtifactError, match=r"incomplete model directory, missing pools\.npz"):
        load_model(tmp_path / "model")


def test_recs_train_keep_pools(tmp_path: Path) -> None:
    runner = CliRunner()
    for flag, out in (([], tmp_path / "plain"), (["--keep-pools"], tmp_path / "kept")):
        args = ["train", "--articles", str(SAMPLE_ARTICLES), "--out", str(out), "--json", *flag]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert not (tmp_path / "plain" / POOLS).exists()
    assert (tmp_path / "kept" / POOLS).is_file()
    plain = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    kept = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    # Same lists, byte for byte.
    assert plain["files"]["arrays.npz"] == kept["files"]["arrays.npz"]


@pytest.mark.usefixtures("no_exact_pass")
def test_retrain_keep_pools_then_the_worker_starts_on_them(
    tmp_path: Path, redis_url: str, sample: list[Article]
) -> None:
    """``recs retrain --keep-pools`` publishes; the update writer (``recs worker``) loads that
    directory, starts without an exact pass and keeps the lists exact under upserts."""
    export = tmp_path / "export.jsonl"
    lines = SAMPLE_ARTICLES.read_text(encoding="utf-8").splitlines(keepends=True)[:400]
    export.write_text("".join(lines), encoding="utf-8")
    root = tmp_path / "models"
    args = ["retrain", "--articles", str(export), "--model-root", str(root)]
    result = CliRunner().invoke(cli, [*args, "--redis-url", redis_url, "--keep-pools"])
    assert result.exit_code == 0, result.output
    client = client_for(redis_url)
    version = current_version(client)
    assert version is not None and (root / version / POOLS).is_file()
    loaded = load_model(root / version)
    current = {a.id: a for a in loaded.articles}
    with Writer(client, lambda v: load_model(root / v)) as writer:
        writer.sync()
        for i, article in enumerate([*sample[400:406], edited(sample[3], 3)]):
            entry = upd.enqueue_upsert(client, article, by="api")
            writer.poll(block_ms=0)
            ack = upd.wait_applied(client, entry, 1.0)
            assert ack is not None and ack["status"] == "applied", (i, ack)
            current[article.id] = article
        assert writer.index is not None
        live = [current[i] for i in writer.index.ids]
    assert_redis_matches_full_build(client, version, loaded.model, live)
    client.close()
