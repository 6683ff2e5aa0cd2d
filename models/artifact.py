"""The model directory: save and load a fitted model without pickle.

Layout::

    manifest.json    version id, created time, config and its hash, counts, file checksums
    arrays.npz       neighbours, scores, IDF vectors, sparse matrices, latent vectors
    vocabulary.json  text terms in column order
    tags.json        tag vocabulary in column order with document frequencies
    articles.jsonl   the articles, in row order (metadata for publishing and serving)
    pools.npz        optional (``recs train --keep-pools``): every article's exact candidates,
                     which ``recs worker``'s incremental index loads instead of recomputing

A directory is written beside its destination and renamed into place, so a crash never leaves
a half-written model where a reader (or ``recs publish``) would find it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from models import jsonsafe
from models.config import ModelConfig
from models.model import RelatedModel, tag_vectorizer, text_vectorizer
from models.records import (
    Article,
    RecordError,
    article_from_mapping,
    format_utc,
    write_articles_jsonl,
)

FORMAT = "related-stories-model"
FORMAT_VERSION = 1
FILES = ("arrays.npz", "vocabulary.json", "tags.json", "articles.jsonl")
POOLS = "pools.npz"  # written only for a model fitted with keep_pools
_SHA256 = re.compile(r"[0-9a-f]{64}")


# Keys save_model writes itself (``extra`` may not replace them).
MANIFEST_KEYS = (
    "format",
    "format_version",
    "version",
    "created_at",
    "source_as_of",
    "config",
    "config_hash",
    "counts",
    "files",
)


class ArtifactError(ValueError):
    """A model directory that is missing, incomplete, corrupt or of an unknown format."""


@dataclass
class LoadedModel:
    """A model read back from disk, with its manifest and articles."""

    model: RelatedModel
    manifest: dict[str, Any]
    articles: list[Article]
    path: Path

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def model_summary(model: RelatedModel) -> dict[str, Any]:
    """Counts describing a fitted model (stored in the manifest and printed by the CLI)."""
    n = len(model.ids_)
    scores = model.scores_[np.isfinite(model.scores_)]
    first = model.scores_[:, 0]
    first = first[np.isfinite(first)]
    return {
        "articles": n,
        "vocabulary": len(model.text_.vocabulary_),
        "tags": len(model.tags_.vocabulary_),
        "articles_with_tags": int(model.tag_matrix_.getnnz(axis=1).astype(bool).sum()),
        "articles_with_text": int(model.text_matrix_.getnnz(axis=1).astype(bool).sum()),
        "k": int(model.neighbours_.shape[1]),
        "coverage": round(model.coverage(), 6),
        "articles_with_neighbours": int((model.neighbours_[:, 0] >= 0).sum()),
        "mean_neighbours": round(float((model.neighbours_ >= 0).sum(axis=1).mean()), 3),
        "score_quantiles": {
            name: round(float(np.quantile(values, q)), 6) if values.size else None
            for values, prefix in ((scores, "all"), (first, "top1"))
            for q, name in ((0.1, f"{prefix}_p10"), (0.5, f"{prefix}_p50"), (0.9, f"{prefix}_p90"))
        },
        "rerank_active": bool(model.rerank_active_),
    }


def save_model(
    model: RelatedModel,
    articles: list[Article],
    path: str | Path,
    *,
    created_at: datetime | None = None,
    source_as_of: datetime | None = None,
    version: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` and its ``articles`` to the directory ``path``; return the manifest.

    ``source_as_of`` is when the training input was read (recorded as ``source_as_of``: the
    update writer replays incremental updates made since then onto the published version).
    ``version`` keeps a given version id instead of deriving one (a model updated in place
    stays the same version); ``extra`` adds manifest keys (e.g. ``incremental``).
    """
    path = Path(path)
    clash = set(extra or {}) & set(MANIFEST_KEYS)
    if clash:
        raise ValueError(f"extra manifest keys clash with the built-in ones: {sorted(clash)}")
    if len(articles) != len(model.ids_) or any(
        a.id != i for a, i in zip(articles, model.ids_, strict=True)
    ):
        raise ValueError("articles must be the ones the model was fitted on, in the same order")
    if path.exists() and not (path / "manifest.json").exists() and any(path.iterdir()):
        raise ArtifactError(f"{path}: exists and is not a model directory; refusing to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = (created_at or datetime.now(UTC)).astimezone(UTC)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        written = _write_files(model, articles, staging)
        checksums = {name: _sha256(staging / name) for name in written}
        digest = hashlib.sha256(
            (model.cfg.config_hash() + "".join(checksums[n] for n in written)).encode()
        ).hexdigest()[:10]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version or f"{created:%Y%m%dT%H%M%SZ}-{digest}",
            "created_at": format_utc(created),
        }
        if source_as_of is not None:
            manifest["source_as_of"] = format_utc(source_as_of)
        manifest.update(
            config=model.cfg.to_dict(),
            config_hash=model.cfg.config_hash(),
            counts=model_summary(model),
            files=checksums,
        )
        manifest.update(extra or {})
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def source_as_of(manifest: Mapping[str, Any]) -> str:
    """When the model's input was read: ``source_as_of``, else ``created_at`` (older models)."""
    return str(manifest.get("source_as_of") or manifest.get("created_at") or "")


def load_model(path: str | Path, *, verify: bool = True) -> LoadedModel:
    """Read a model directory; ``verify`` checks every file's checksum first.

    Whatever is wrong with the directory (a hand-edited manifest, a truncated or foreign file)
    is an :class:`ArtifactError` naming the file.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        for name, expected in manifest["files"].items():
            if _sha256(path / name) != expected:
                raise ArtifactError(f"{path / name}: checksum mismatch; the model is corrupt")
    config = ModelConfig.from_dict(manifest["config"], source=f"{path}/manifest.json config")
    data = _read_arrays(path / "arrays.npz")
    terms = _read_json(path / "vocabulary.json")
    tag_info = _read_json(path / "tags.json")
    articles = _read_articles(path / "articles.jsonl")
    try:
        model = _assemble(config, manifest, data, terms, tag_info, articles)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # Only reachable when the checksums were skipped or rewritten with the files.
        reason = f"{type(exc).__name__}: {exc}"
        raise ArtifactError(f"{path}: corrupt model directory ({reason})") from None
    if model.neighbours_.shape[0] != len(articles):
        raise ArtifactError(f"{path}: arrays and articles.jsonl disagree on the article count")
    # Read only by the incremental index (read_pools): the API never pays for them.
    model.pools_file_ = path / POOLS if POOLS in manifest["files"] else None
    return LoadedModel(model=model, manifest=manifest, articles=articles, path=path)


def _assemble(
    config: ModelConfig,
    manifest: Mapping[str, Any],
    data: dict[str, np.ndarray],
    terms: Any,
    tag_info: Any,
    articles: list[Article],
) -> RelatedModel:
    """A fitted :class:`RelatedModel` from the decoded files of a model directory."""
    model = RelatedModel(config=config)
    model.ids_ = [a.id for a in articles]
    model.index_ = {article_id: row for row, article_id in enumerate(model.ids_)}
    vocabulary = {term: i for i, term in enumerate(_strings(terms, "vocabulary.json"))}
    model.text_ = text_vectorizer(config).set_fitted(vocabulary, data["text_idf"])
    tags = tag_vectorizer(config)
    tags.vocabulary_ = {tag: i for i, tag in enumerate(_strings(tag_info["tags"], "tags.json"))}
    tags.idf_ = data["tag_idf"]
    tags.document_frequency_ = np.asarray(tag_info["df"], dtype=np.int64)
    tags.n_documents_ = int(tag_info["n_documents"])
    tags.glued_ = {str(k): list(v) for k, v in tag_info.get("glued", {}).items()}
    model.tags_ = tags
    model.text_matrix_ = _csr(data, "text")
    model.tag_matrix_ = _csr(data, "tag")
    model.neighbours_ = data["neighbours"]
    model.scores_ = data["scores"]
    model.rerank_active_ = bool(manifest["counts"]["rerank_active"])
    model.latent_ = data.get("latent")
    model.svd_components_ = data.get("svd_components")
    return model


def read_pools(model: RelatedModel) -> tuple[np.ndarray, np.ndarray] | None:
    """The model's kept candidate pools (int32 ids, float64 scores), from memory or from its
    directory's ``pools.npz``; ``None`` when it was fitted without ``keep_pools``."""
    if model.pools_ is not None:
        return model.pools_
    path = model.pools_file_
    if path is None:
        return None
    data = _read_arrays(path)
    try:
        ids, scores = data["ids"], data["scores"]
    except KeyError as exc:
        raise ArtifactError(f"{path}: no {exc} array") from None
    if ids.shape != scores.shape or ids.ndim != 2 or ids.shape[0] != len(model.ids_):
        raise ArtifactError(f"{path}: pools of shape {ids.shape} do not fit the model")
    return ids, scores


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name}: expected a list of strings")
    return value


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a model directory's manifest."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such model directory")
    if not (path / "manifest.json").is_file():
        raise ArtifactError(f"{path}: not a model directory (no manifest.json)")
    manifest = _read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}/manifest.json: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: model format version {manifest.get('format_version')} is not supported"
            f" (this build reads {FORMAT_VERSION}); retrain the model"
        )
    _check_manifest(manifest, path / "manifest.json")
    missing = [name for name in manifest["files"] if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"{path}: incomplete model directory, missing {', '.join(missing)}")
    return manifest


def _check_manifest(manifest: dict[str, Any], source: Path) -> None:
    """The keys load_model relies on, and ``files`` naming exactly the files save writes.

    ``files`` drives the checksum pass, so an entry like ``../../etc/hostname`` or
    ``/dev/zero`` would be opened (and the latter read forever) if it were trusted.
    """
    for key, kind, noun in (
        ("version", str, "a string"),
        ("config", dict, "an object"),
        ("counts", dict, "an object"),
        ("files", dict, "an object"),
    ):
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(f"{source}: '{key}' is missing or not {noun}")
    files = manifest["files"]
    for name, checksum in files.items():
        if name not in FILES and name != POOLS:
            raise ArtifactError(
                f"{source}: 'files' entry {name[:80]!r} is not a model file"
                f" (expected {', '.join(FILES)})"
            )
        if not isinstance(checksum, str) or not _SHA256.fullmatch(checksum):
            raise ArtifactError(f"{source}: 'files' entry {name!r} has no valid sha256 checksum")
    unlisted = [name for name in FILES if name not in files]
    if unlisted:
        raise ArtifactError(f"{source}: 'files' lists no checksum for {', '.join(unlisted)}")


def _read_json(path: Path) -> Any:
    """One JSON file of a model directory; every failure is an ArtifactError naming it."""
    try:
        return jsonsafe.loads(path.read_bytes())
    except jsonsafe.JSONInputError as exc:
        raise ArtifactError(f"{path}:{exc.line or 1}: {exc.reason}") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: not a readable array file ({exc})") from None


def _write_files(model: RelatedModel, articles: list[Article], directory: Path) -> list[str]:
    """Write the model's files into ``directory``; return their names."""
    arrays: dict[str, np.ndarray] = {
        "neighbours": np.asarray(model.neighbours_, dtype=np.int32),
        "scores": np.asarray(model.scores_, dtype=np.float32),
        "text_idf": np.asarray(model.text_.idf_, dtype=np.float64),
        "tag_idf": np.asarray(model.tags_.idf_, dtype=np.float64),
    }
    for prefix, matrix in (("text", model.text_matrix_), ("tag", model.tag_matrix_)):
        matrix = sp.csr_matrix(matrix)
        arrays[f"{prefix}_data"] = matrix.data
        arrays[f"{prefix}_indices"] = matrix.indices
        arrays[f"{prefix}_indptr"] = matrix.indptr
        arrays[f"{prefix}_shape"] = np.asarray(matrix.shape, dtype=np.int64)
    if model.latent_ is not None and model.svd_components_ is not None:
        arrays["latent"] = model.latent_
        arrays["svd_components"] = model.svd_components_
    with open(directory / "arrays.npz", "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    (directory / "vocabulary.json").write_text(json.dumps(model.text_.terms_, ensure_ascii=False))
    (directory / "tags.json").write_text(
        json.dumps(
            {
                "tags": model.tags_.terms_,
                "df": model.tags_.document_frequency_.tolist(),
                "n_documents": model.tags_.n_documents_,
                "glued": model.tags_.glued_,
            },
            ensure_ascii=False,
        )
    )
    write_articles_jsonl(articles, directory / "articles.jsonl")
    pools = model.pools_
    if pools is None:
        return list(FILES)
    with open(directory / POOLS, "wb") as handle:
        np.savez(
            handle, ids=np.asarray(pools[0], np.int32), scores=np.asarray(pools[1], np.float64)
        )
    return [*FILES, POOLS]


def _csr(data: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    shape = tuple(int(x) for x in data[f"{prefix}_shape"])
    return sp.csr_matrix(
        (data[f"{prefix}_data"], data[f"{prefix}_indices"], data[f"{prefix}_indptr"]), shape=shape
    )


def _read_articles(path: Path) -> list[Article]:
    articles = []
    try:
        with open(path, encoding="utf-8", newline="\n") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = jsonsafe.loads(line)
                except jsonsafe.JSONInputError as exc:
                    raise ArtifactError(f"{path}:{number}: {exc.reason}") from None
                articles.append(article_from_mapping(record, source=str(path), line=number))
    except RecordError as exc:
        raise ArtifactError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return articles


def _replace_dir(staging: Path, destination: Path) -> None:
    """Move ``staging`` to ``destination``, replacing an existing model directory."""
    if not destination.exists():
        os.replace(staging, destination)
        return
    retired = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    os.replace(destination, retired)
    os.replace(staging, destination)
    shutil.rmtree(retired, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
