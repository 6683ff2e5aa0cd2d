"""Model directory: save/load round trip without pickle, and clear errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ArtifactError, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from tests.conftest import SAMPLE_ARTICLES


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[RelatedModel, list, Path]:
    articles = read_articles([SAMPLE_ARTICLES]).articles[:400]
    model = RelatedModel(config=ModelConfig(k=10, rerank_components=20)).fit(articles)
    path = tmp_path_factory.mktemp("artifact") / "model"
    save_model(model, articles, path)
    return model, articles, path


def test_round_trip_gives_identical_results(trained) -> None:  # type: ignore[no-untyped-def]
    model, articles, path = trained
    loaded = load_model(path)
    again = loaded.model
    assert loaded.articles == articles
    assert again.cfg == model.cfg
    np.testing.assert_array_equal(again.neighbours_, model.neighbours_)
    np.testing.assert_array_equal(again.scores_, model.scores_)
    for a, b in [(0, 1), (5, 300), (42, 17)]:
        ida, idb = model.ids_[a], model.ids_[b]
        assert again.similarity(ida, idb) == model.similarity(ida, idb)
        assert again.explain(ida, idb) == model.explain(ida, idb)
    # The fitted vectorisers are restored too: new text maps to the same vectors.
    title, body = ["Cocoa prices rise in Ghana"], ["Cocoa exporters expect a better crop"]
    np.testing.assert_allclose(
        again.text_.transform(title, body).toarray(), model.text_.transform(title, body).toarray()
    )
    assert (
        again.tags_.transform([["USA", "west-germany"]]).nnz
        == model.tags_.transform([["USA", "west-germany"]]).nnz
    )
    np.testing.assert_array_equal(again.latent_, model.latent_)


def test_manifest_and_arrays_need_no_pickle(trained) -> None:  # type: ignore[no-untyped-def]
    model, _, path = trained
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["config_hash"] == model.cfg.config_hash()
    assert manifest["config"]["k"] == 10
    assert manifest["counts"]["articles"] == 400
    stamp = manifest["created_at"].replace("-", "").replace(":", "")
    assert manifest["version"].startswith(stamp.removesuffix("Z") + "Z-")
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    with zipfile.ZipFile(path / "arrays.npz") as archive:
        assert "neighbours.npy" in archive.namelist()


def test_config_hash_changes_with_any_parameter() -> None:
    base = ModelConfig()
    assert base.config_hash() == ModelConfig().config_hash()
    assert base.config_hash() != base.replace(alpha=0.5).config_hash()
    assert base.config_hash() != base.replace(rerank_pool=101).config_hash()


def test_corrupt_file_is_detected(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, articles, _ = trained
    path = tmp_path / "m"
    save_model(model, articles, path)
    with open(path / "articles.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_model(path)


def test_missing_pieces_are_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such model directory"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_model(tmp_path / "empty")


def test_refuses_to_overwrite_a_directory_that_is_not_a_model(
    trained,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    model, articles, _ = trained
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a model directory"):
        save_model(model, articles, precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_save_replaces_an_existing_model(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, articles, _ = trained
    path = tmp_path / "m"
    save_model(model, articles, path)
    first = load_model(path).version
    save_model(model, articles, path)
    assert load_model(path).model.neighbours_.shape == model.neighbours_.shape
    # No staging or retired directories are left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert first.split("-")[1] == load_model(path).version.split("-")[1]
