"""Writing an incremental index back as a model directory (``recs upsert --model DIR``)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ArtifactError, LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.incremental.export import save_incremental
from models.incremental.fitted import unknown_share
from models.incremental.index import IncrementalIndex
from models.model import RelatedModel
from models.records import Article, read_articles
from tests.paths import SAMPLE_ARTICLES

N, M = 200, 30
BUILT_AT = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
SOURCE_AS_OF = datetime(2024, 5, 1, 5, 45, tzinfo=UTC)
UPDATED_AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
CONFIGS = {
    "plain": ModelConfig(k=8, rerank=False),
    "rerank": ModelConfig(k=8, rerank_components=16, rerank_pool=24),
}


@pytest.fixture(scope="module")
def sample() -> list[Article]:
    return read_articles([SAMPLE_ARTICLES]).articles


@pytest.fixture(scope="module", params=list(CONFIGS))
def base_dir(
    request: pytest.FixtureRequest, sample: list[Article], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    model = RelatedModel(config=CONFIGS[request.param]).fit(sample[:N])
    path = tmp_path_factory.mktemp(f"base-{request.param}") / "model"
    save_model(model, sample[:N], path, created_at=BUILT_AT, source_as_of=SOURCE_AS_OF)
    return path


def updated_index(base: LoadedModel, sample: list[Article]) -> tuple[IncrementalIndex, int, int]:
    """The base's index after M new articles, 3 edits and 5 deletes; (index, upserts, deletes)."""
    index = IncrementalIndex.from_model(base.model)
    for i, article in enumerate(sample[N : N + M]):
        if i % 7 == 0:
            # Words and a tag the fitted vocabulary never saw: they carry no weight.
            article = dataclasses.replace(
                article, body=f"{article.body} zorblaxian{i}", tags=(*article.tags, f"new-{i}")
            )
        index.upsert(article)
    for row in (3, 40, 41):
        index.upsert(dataclasses.replace(sample[row], body=sample[N + M + row].body))
    for gone in (sample[0].id, sample[10].id, sample[N + 2].id, sample[N + 5].id, sample[40].id):
        index.delete(gone)
    return index, M + 3, 5


def assert_same_lists(model: RelatedModel, index: IncrementalIndex) -> None:
    assert model.ids_ == index.ids
    for article_id in index.ids:
        assert model.neighbours(article_id) == index.neighbours(article_id), article_id


def test_to_loaded_saves_and_loads_the_live_corpus(
    base_dir: Path, sample: list[Article], tmp_path: Path
) -> None:
    base = load_model(base_dir)
    index, upserts, deletes = updated_index(base, sample)
    exported = index.to_loaded(base, updated_at=UPDATED_AT)
    save_incremental(exported, tmp_path / "updated")
    reloaded = load_model(tmp_path / "updated")
    # Updated in place, it is still the same build: version id and build time are kept.
    assert exported.version == reloaded.version == base.version
    assert reloaded.manifest["created_at"] == base.manifest["created_at"]
    # ... and when its input was read: the update writer replays from there.
    assert reloaded.manifest["source_as_of"] == "2024-05-01T05:45:00Z"

    assert_same_lists(reloaded.model, index)
    assert [a.id for a in reloaded.articles] == index.ids
    by_id = {a.id: a for a in reloaded.articles}
    assert by_id[sample[3].id].body == sample[N + M + 3].body.strip()  # the edit, not the old
    assert sample[0].id not in by_id and sample[N + 2].id not in by_id
    # Edits moved to the end of the row (tie) order, after the new articles.
    assert reloaded.model.ids_[-3:] == [sample[N + M - 1].id, sample[3].id, sample[41].id]

    # The fitted state is the base's: same vocabulary, IDF, tags, config and SVD.
    assert reloaded.model.text_.vocabulary_ == base.model.text_.vocabulary_
    np.testing.assert_array_equal(reloaded.model.text_.idf_, base.model.text_.idf_)
    assert reloaded.model.tags_.vocabulary_ == base.model.tags_.vocabulary_
    assert reloaded.manifest["config"] == base.manifest["config"]
    assert reloaded.model.rerank_active_ == base.model.rerank_active_
    if base.model.svd_components_ is not None:
        np.testing.assert_array_equal(reloaded.model.svd_components_, base.model.svd_components_)
        assert reloaded.model.latent_ is not None
        assert reloaded.model.latent_.shape == (len(index), base.model.latent_.shape[1])

    counts = reloaded.manifest["counts"]
    assert counts["articles"] == len(index) == N + M - deletes
    assert counts["k"] == base.model.cfg.k
    assert reloaded.manifest["incremental"] == {
        "upserts": upserts,
        "deletes": deletes,
        "base_articles": N,
        "updated_at": "2024-05-01T09:30:00Z",
    }


def test_new_articles_can_be_compared_and_explained(
    base_dir: Path, sample: list[Article], tmp_path: Path
) -> None:
    base = load_model(base_dir)
    index, _, _ = updated_index(base, sample)
    save_incremental(index.to_loaded(base), tmp_path / "updated")
    model = load_model(tmp_path / "updated").model
    fresh = next(a.id for a in sample[N + 1 : N + M] if index.neighbours(a.id))
    neighbour, score = index.neighbours(fresh)[0]
    pair = model.similarity(fresh, neighbour)
    assert pair.blended > 0
    if not model.rerank_active_:
        # Without re-ranking a list's score is the blended cosine itself.
        assert pair.blended == pytest.approx(score, abs=1e-6)
    explanation = model.explain(fresh, neighbour)
    assert explanation.shared_tags or explanation.top_terms
    # An unknown word of a new article is nowhere in the model.
    assert "zorblaxian7" not in model.text_.vocabulary_


def test_reopening_the_saved_model_gives_the_same_lists(
    base_dir: Path, sample: list[Article], tmp_path: Path
) -> None:
    base = load_model(base_dir)
    index, _, _ = updated_index(base, sample)
    save_incremental(index.to_loaded(base), tmp_path / "updated")
    reopened = IncrementalIndex.from_model(load_model(tmp_path / "updated").model)
    assert reopened.ids == index.ids
    assert reopened.lists() == index.lists()


def test_counters_add_up_over_repeated_runs(
    base_dir: Path, sample: list[Article], tmp_path: Path
) -> None:
    base = load_model(base_dir)
    index, upserts, deletes = updated_index(base, sample)
    save_incremental(index.to_loaded(base), tmp_path / "model")
    # A second `recs upsert --model DIR` run: a new index over the saved model.
    first = load_model(tmp_path / "model")
    again = IncrementalIndex.from_model(first.model)
    again.upsert(sample[N + M + 50])
    again.delete(sample[N + 1].id)
    again.upsert(dataclasses.replace(sample[N + 1], title="back again"))
    assert (again.upserts, again.deletes) == (2, 1)
    save_incremental(again.to_loaded(first), tmp_path / "model")
    second = load_model(tmp_path / "model")
    block = second.manifest["incremental"]
    assert (block["upserts"], block["deletes"]) == (upserts + 2, deletes + 1)
    assert block["base_articles"] == N  # still the full build's corpus
    assert_same_lists(second.model, again)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging left behind


def test_plain_save_model_keeps_the_lists(
    base_dir: Path, sample: list[Article], tmp_path: Path
) -> None:
    base = load_model(base_dir)
    index, _, _ = updated_index(base, sample)
    exported = index.to_loaded(base)
    save_model(exported.model, exported.articles, tmp_path / "plain")
    assert_same_lists(load_model(tmp_path / "plain").model, index)


def test_unchanged_index_exports_the_base(base_dir: Path) -> None:
    base = load_model(base_dir)
    exported = IncrementalIndex.from_model(base.model).to_loaded(base, updated_at=UPDATED_AT)
    assert exported.model.ids_ == base.model.ids_
    np.testing.assert_array_equal(exported.model.neighbours_, base.model.neighbours_)
    np.testing.assert_allclose(exported.model.scores_, base.model.scores_, atol=1e-6)
    assert (exported.model.text_matrix_ != base.model.text_matrix_).nnz == 0
    assert exported.manifest["incremental"]["upserts"] == 0
    assert exported.manifest["counts"]["articles"] == N


def test_to_loaded_refuses_a_different_base(
    base_dir: Path, sample: list[Article], tmp_path: Path
) -> None:
    base = load_model(base_dir)
    other = RelatedModel(config=base.model.cfg).fit(sample[N : 2 * N])
    save_model(other, sample[N : 2 * N], tmp_path / "other")
    with pytest.raises(ValueError, match="not the model this index was built from"):
        IncrementalIndex.from_model(base.model).to_loaded(load_model(tmp_path / "other"))


def test_save_incremental_refuses_to_overwrite_a_non_model_directory(
    base_dir: Path, tmp_path: Path
) -> None:
    base = load_model(base_dir)
    exported = IncrementalIndex.from_model(base.model).to_loaded(base)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        save_incremental(exported, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    manifest = save_incremental(exported, tmp_path / "fresh")
    on_disk = json.loads((tmp_path / "fresh" / "manifest.json").read_text())
    assert on_disk == manifest and on_disk["incremental"]["base_articles"] == N


def test_unknown_share_measures_what_the_fitted_model_cannot_weigh(
    base_dir: Path, sample: list[Article]
) -> None:
    model = load_model(base_dir).model
    built = unknown_share(model, sample[:N])
    # Build tags are known except those on a single article (tag_min_df drops them).
    assert 0 <= built["words"] < 0.5 and 0 <= built["tags"] < 0.5
    novel = Article(
        id="novel", title="Zorblaxian quuxification", body="flibbertigibbet", tags=("new-tag",)
    )
    assert unknown_share(model, [novel]) == {"words": 1.0, "tags": 1.0}
    # Half the tags known, half not.
    known_tag = next(
        t
        for a in sample[:N]
        for t in a.tags
        if unknown_share(model, [Article(id="t", title="t", tags=(t,))])["tags"] == 0.0
    )
    mixed = dataclasses.replace(novel, tags=(known_tag, "another-new-tag"))
    assert unknown_share(model, [mixed])["tags"] == 0.5
    assert unknown_share(model, []) == {"words": 0.0, "tags": 0.0}
