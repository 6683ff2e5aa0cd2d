"""One article as its values in a version: what publish and the update writer both store."""

from __future__ import annotations

import dataclasses

import numpy as np

from models.artifact import LoadedModel
from models.records import published_timestamp
from service.redis import encode, keys


def test_model_lists_drop_the_padding_and_match_one_list_encoding() -> None:
    neighbours = np.array([[3, 1, -1], [-1, -1, -1], [0, 2, 1]], dtype=keys.ROW_DTYPE)
    scores = np.array([[0.9, 0.5, 0.0], [0.0, 0.0, 0.0], [0.7, 0.6, 0.25]], dtype=np.float32)
    blobs = encode.model_lists(neighbours, keys.quantize_scores(scores))
    assert blobs == [
        keys.encode_neighbours(np.array([3, 1]), scores[0, :2]),
        b"",
        keys.encode_neighbours(neighbours[2], scores[2]),
    ]


def test_index_lists_store_neighbours_as_their_rows() -> None:
    blob = encode.index_list([("b", 0.75), ("a", 0.5)], {"a": 7, "b": 40})
    rows, scores = keys.decode_neighbours(blob)
    assert rows.tolist() == [40, 7]
    assert scores.tolist() == [np.float32(49151 / 65535), np.float32(32768 / 65535)]


def test_an_article_is_encoded_with_its_tag_keys_time_and_section(loaded: LoadedModel) -> None:
    article = next(a for a in loaded.articles if a.tags)
    got = encode.encode_article(loaded.model, article)
    assert got.id == article.id
    assert keys.decode_meta(got.meta) == {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "section": article.section,
        "published_at": article.published_at,
        "image_url": article.image_url,
        "tags": list(article.tags),
        "tag_keys": loaded.model.tags_.tag_keys(article.tags),
    }
    assert got.published == published_timestamp(article.published_at)
    named = encode.encode_article(loaded.model, dataclasses.replace(article, section="World News"))
    assert named.section == "world news"
    blank = encode.encode_article(loaded.model, dataclasses.replace(article, section="  "))
    assert blank.section == ""
