"""Article metadata blobs as the API reads them (the layout: service/redis/keys.py)."""

from __future__ import annotations

import json

from service.store.base import ArticleMeta


def meta_id(blob: bytes) -> str | None:
    """The id in a metadata blob without decoding it (``None`` if it is not there)."""
    # The id is the array's first string and never escaped (see keys.META_FIELDS).
    if not blob.startswith(b'["'):
        return None
    end = blob.find(b'"', 2)
    return blob[2:end].decode() if end > 2 else None


# A decoder of str: json.loads(bytes) first sniffs the encoding on every call.
_decode_json = json.JSONDecoder().decode


def decode_meta(blob: bytes) -> ArticleMeta:
    """A stored metadata blob as an :class:`ArticleMeta`."""
    # Unpacked by position (keys.META_FIELDS order): about three times cheaper than
    # keys.decode_meta's dict, and a cold request decodes some forty of them.
    values = _decode_json(blob.decode())
    if len(values) == 8:  # no flag set: most articles
        article_id, title, url, section, published_at, image_url, tags, tag_keys = values
        return ArticleMeta(
            article_id, title, url, section, published_at, image_url, tuple(tags), tuple(tag_keys)
        )
    # Flags follow tag_keys as far as one is set (keys.FLAG_FIELDS); 0 means unset.
    article_id, title, url, section, published_at, image_url, tags, tag_keys = values[:8]
    no_recommend, sponsored, embargo, expires = [*values[8:12], 0, 0, 0, 0][:4]
    return ArticleMeta(
        article_id,
        title,
        url,
        section,
        published_at,
        image_url,
        tuple(tags),
        tuple(tag_keys),
        bool(no_recommend),
        bool(sponsored),
        float(embargo) if embargo else None,
        float(expires) if expires else None,
    )
