"""Writing an incrementally updated corpus back as a model directory.

A model updated in place stays the model it was: same version id, build time and
``source_as_of`` (the update writer's replay point), the same fitted vectorisers and config,
with the live articles and lists, and an ``"incremental"`` manifest block counting the changes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.artifact import MANIFEST_KEYS, LoadedModel, model_summary, save_model
from models.model import RelatedModel
from models.records import Article, format_utc


def live_model(
    base: LoadedModel,
    model: RelatedModel,
    lists: tuple[list[str], np.ndarray, np.ndarray],
    *,
    kept_rows: np.ndarray,
    added: Sequence[Article],
    latent: np.ndarray | None,
    changes: tuple[int, int],
    updated_at: datetime | None = None,
) -> LoadedModel:
    """The live corpus of an index built from ``base``, as a model.

    ``model``: the fitted model the index holds (its vectorisers score the added articles);
    ``lists``: the index's snapshot (live ids, neighbour positions, scores); ``kept_rows``:
    the rows of ``base`` still live, in order; ``added``: the articles appended since, in row
    order (the live ids are ``kept_rows``' then ``added``'s); ``latent``: the live rows' latent
    vectors (re-ranking) or ``None``; ``changes``: (upserts, deletes) made by the index.

    The result has the same fitted vectorisers, SVD components and config, the manifest's
    counts recomputed and an ``"incremental"`` block: upserts and deletes since the last full
    build (added to the base manifest's, so they add up over repeated ``recs upsert`` runs), the
    article count of that build and when the changes were made. Its ``version`` is still the
    base's. A full build over its articles with its vectorisers gives the same lists.
    """
    ids, neighbours, scores = lists
    articles = [base.articles[int(r)] for r in kept_rows] + list(added)

    out = RelatedModel(config=model.config)
    out.ids_ = ids
    out.index_ = {article_id: row for row, article_id in enumerate(ids)}
    out.text_ = model.text_
    out.tags_ = model.tags_
    # Kept rows are copied, not re-vectorised: bit for bit what the index scored with.
    text_parts = [sp.csr_matrix(model.text_matrix_)[kept_rows]]
    tag_parts = [sp.csr_matrix(model.tag_matrix_)[kept_rows]]
    if added:
        text_parts.append(model.text_.transform([a.title for a in added], [a.body for a in added]))
        tag_parts.append(model.tags_.transform([a.tags for a in added]))
    out.text_matrix_ = sp.csr_matrix(sp.vstack(text_parts, format="csr"))
    out.tag_matrix_ = sp.csr_matrix(sp.vstack(tag_parts, format="csr"))
    out.neighbours_ = neighbours.astype(np.int32)
    out.scores_ = scores.astype(np.float32)
    out.rerank_active_ = bool(model.rerank_active_)
    out.svd_components_ = model.svd_components_
    out.latent_ = latent

    manifest = copy.deepcopy(base.manifest)
    manifest["counts"] = model_summary(out)
    prior = manifest.get("incremental") or {}
    upserts, deletes = changes
    manifest["incremental"] = {
        "upserts": int(prior.get("upserts", 0)) + upserts,
        "deletes": int(prior.get("deletes", 0)) + deletes,
        # The corpus the vocabulary and IDF were fitted on: the denominator of drift.
        "base_articles": int(prior.get("base_articles", base.manifest["counts"]["articles"])),
        "updated_at": format_utc(updated_at or datetime.now(UTC)),
    }
    return LoadedModel(model=out, manifest=manifest, articles=articles, path=base.path)


def save_incremental(loaded: LoadedModel, path: str | Path) -> dict[str, Any]:
    """Save :meth:`IncrementalIndex.to_loaded`'s model to ``path``; return the manifest.

    A model updated in place stays the model it was: same version id, build time and
    ``source_as_of`` (the update writer's replay point), with the manifest's ``incremental``
    block (and any other key ``save_model`` does not write itself) carried over.
    """
    manifest = loaded.manifest
    created = manifest.get("created_at")
    as_of = manifest.get("source_as_of")
    return save_model(
        loaded.model,
        loaded.articles,
        path,
        created_at=datetime.fromisoformat(created) if created else None,
        source_as_of=datetime.fromisoformat(as_of) if as_of else None,
        version=loaded.version,
        extra={key: value for key, value in manifest.items() if key not in MANIFEST_KEYS},
    )
