"""One article as the values of a version: its metadata blob, its place in the "latest" sorted
sets and its neighbour list (the layout itself: :mod:`service.redis.keys`).

A publish encodes every article of a model this way and the update writer each article it
upserts, so a version that grew by incremental updates holds the very bytes a full publish of
the same articles would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.flags import flag_timestamp
from models.model import RelatedModel
from models.records import Article, published_timestamp
from service.redis import keys


def section_name(section: str) -> str:
    """The name of an article section's "latest" set: case-folded; ``""`` when it has none."""
    return section.casefold() if section.strip() else ""


@dataclass(frozen=True)
class EncodedArticle:
    """An article's values in a version, apart from its neighbour list and row."""

    id: str
    # Stored at :func:`keys.meta_key` of the article's row.
    meta: bytes
    # Its score in :func:`keys.latest_key` and in its section's set.
    published: float
    # Its :func:`keys.latest_section_key` name (``""``: in no section set).
    section: str


def encode_article(model: RelatedModel, article: Article) -> EncodedArticle:
    """The values one article is stored as in a version of ``model``."""
    meta = keys.encode_meta(
        article.id,
        article.title,
        article.url,
        article.section,
        article.published_at,
        article.image_url,
        article.tags,
        model.tags_.tag_keys(article.tags),
        keys.encode_flags(
            article.no_recommend,
            article.sponsored,
            flag_timestamp(article.embargo_until),
            flag_timestamp(article.expires_at),
        ),
    )
    return EncodedArticle(
        id=article.id,
        meta=meta,
        published=published_timestamp(article.published_at),
        section=section_name(article.section),
    )


def model_lists(neighbours: np.ndarray, quantised: np.ndarray) -> list[bytes]:
    """Neighbour blobs of a block of a model's rows (``-1`` padded at the end; only the valid
    prefix is stored), given its rows and its scores quantised by :func:`keys.quantize_scores`."""
    counts = (neighbours >= 0).sum(axis=1)
    return [
        keys.pack_neighbours(rows[:count], scores[:count])
        for rows, scores, count in zip(neighbours, quantised, counts, strict=True)
    ]


def index_list(pairs: Sequence[tuple[str, float]], rows: Mapping[str, int]) -> bytes:
    """Neighbour blob of an index's ``(id, score)`` list, each id stored as its Redis row."""
    ids = np.array([rows[n] for n, _ in pairs], dtype=keys.ROW_DTYPE)
    scores = np.array([s for _, s in pairs], dtype=np.float32)
    return keys.encode_neighbours(ids, scores)
