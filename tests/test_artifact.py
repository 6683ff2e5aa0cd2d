"""Model directory: save/load round trip without pickle, and clear errors."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.artifact import ArtifactError, load_model, read_manifest, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import read_articles
from tests.paths import SAMPLE_ARTICLES


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


# --- hand-edited or corrupt model directories: an ArtifactError naming the file ---------------


def edit_manifest(path: Path, change: Any) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def replace_file(path: Path, name: str, content: str) -> None:
    """Rewrite one model file and its checksum, as a careless hand edit would."""
    (path / name).write_text(content, encoding="utf-8")
    digest = hashlib.sha256((path / name).read_bytes()).hexdigest()
    edit_manifest(path, lambda m: m["files"].__setitem__(name, digest))


@pytest.fixture
def copy(trained, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    _, _, path = trained
    out = tmp_path / "m"
    shutil.copytree(path, out)
    return out


@pytest.mark.parametrize("entry", ["../../etc/hostname", "/dev/zero", "manifest.json"])
def test_manifest_files_outside_the_fixed_set_are_refused(copy: Path, entry: str) -> None:
    edit_manifest(copy, lambda m: m["files"].__setitem__(entry, "0" * 64))
    message = f"{copy}/manifest.json: 'files' entry {entry!r} is not a model file"
    with pytest.raises(ArtifactError, match=re.escape(message)):
        read_manifest(copy)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        load_model(copy)


def test_manifest_files_must_list_every_model_file_with_a_sha256(copy: Path) -> None:
    edit_manifest(copy, lambda m: m["files"].pop("tags.json"))
    with pytest.raises(ArtifactError, match="'files' lists no checksum for tags.json"):
        load_model(copy)
    edit_manifest(copy, lambda m: m["files"].__setitem__("tags.json", ["not", "a", "digest"]))
    with pytest.raises(ArtifactError, match="'files' entry 'tags.json' has no valid sha256"):
        load_model(copy)
    edit_manifest(copy, lambda m: m.__setitem__("files", ["arrays.npz"]))
    with pytest.raises(ArtifactError, match="'files' is missing or not an object"):
        load_model(copy)


DEEP = "[" * 5000 + "]" * 5000


def test_a_deeply_nested_manifest_is_an_artifact_error(copy: Path) -> None:
    (copy / "manifest.json").write_text('{"format": ' + DEEP + "}")
    with pytest.raises(ArtifactError, match=r"manifest\.json:1: invalid JSON \(nested deeper"):
        load_model(copy)


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("vocabulary.json", DEEP, "vocabulary.json:1: invalid JSON (nested deeper than 64"),
        ("tags.json", '{\n"tags": ' + "7" * 5000 + "}", "tags.json:2: invalid JSON (number with"),
        ("tags.json", '{"tags": [1, 2]}', "tags.json: expected a list of strings"),
        ("vocabulary.json", "{}", "vocabulary.json: expected a list of strings"),
    ],
)
def test_corrupt_json_files_with_matching_checksums_are_artifact_errors(
    copy: Path, name: str, content: str, where: str
) -> None:
    replace_file(copy, name, content)
    with pytest.raises(ArtifactError, match=re.escape(where)):
        load_model(copy)


def test_corrupt_article_lines_name_file_and_line(copy: Path) -> None:
    lines = (copy / "articles.jsonl").read_text(encoding="utf-8").split("\n")
    lines[3] = '{"id": "x", "title": "t", "meta": ' + DEEP + "}"
    replace_file(copy, "articles.jsonl", "\n".join(lines))
    with pytest.raises(ArtifactError, match=r"articles\.jsonl:4: invalid JSON \(nested deeper"):
        load_model(copy)
    lines[3] = '{"id": "bad id!", "title": "t"}'
    replace_file(copy, "articles.jsonl", "\n".join(lines))
    with pytest.raises(ArtifactError, match=r"articles\.jsonl:4: field 'id'"):
        load_model(copy)


def test_missing_manifest_keys_and_a_garbage_array_file_are_artifact_errors(copy: Path) -> None:
    edit_manifest(copy, lambda m: m["counts"].pop("rerank_active"))
    with pytest.raises(ArtifactError, match=r"corrupt model directory \(KeyError: 'rerank_active'"):
        load_model(copy)
    edit_manifest(copy, lambda m: m.__setitem__("counts", {"rerank_active": False}))
    replace_file(copy, "arrays.npz", "not a zip file")
    with pytest.raises(ArtifactError, match=r"arrays\.npz: not a readable array file"):
        load_model(copy)


def test_model_saved_before_rerank_fit_rows_still_loads(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Directories written before the SVD sample existed have no such key in their config;
    # they were fitted on all rows, which the default (20,000) equals for their sizes here.
    model, articles, path = trained
    old = tmp_path / "old-model"
    shutil.copytree(path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["config"]["rerank_fit_rows"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_model(old)
    assert loaded.model.cfg.rerank_fit_rows == ModelConfig().rerank_fit_rows > len(articles)
    np.testing.assert_array_equal(loaded.model.neighbours_, model.neighbours_)
    np.testing.assert_array_equal(loaded.model.svd_components_, model.svd_components_)
