"""Where "Recommended for you" reads its data: Redis in batched round trips, or any Store.

The Redis source keys candidates by row number, so a whole history's neighbour lists come back
in one round trip without resolving each neighbour's id; ids are read only for the candidates
kept (their metadata blobs start with the id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from models.ranking import ModelSource
from service import keys
from service.history import call
from service.store.base import ArticleMeta, Store

# Returns, per id, its row ('' if unknown) and its neighbour blob ('' if missing).
_HISTORY_LUA = """
local n = #ARGV - 1
local out = {}
if n == 0 then return out end
local rows = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
for i = 1, n do
  local row = rows[i]
  local blob = ''
  if row then
    blob = redis.call('GET', ARGV[1] .. row) or ''
  else
    row = ''
  end
  out[2 * i - 1] = row
  out[2 * i] = blob
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_meta(blob: bytes) -> ArticleMeta:
    """A stored metadata blob as an :class:`ArticleMeta`."""
    record = keys.decode_meta(blob)
    return ArticleMeta(
        id=record["id"],
        title=record["title"],
        url=record["url"],
        section=record["section"],
        published_at=record["published_at"],
        image_url=record["image_url"],
        tags=tuple(record["tags"]),
        tag_keys=tuple(record["tag_keys"]),
    )


def _pairs(blob: bytes | None) -> list[tuple[int, float]]:
    if not blob:
        return []
    rows, scores = keys.decode_neighbours(blob)
    return list(zip(rows.tolist(), scores.tolist(), strict=True))


class RedisSource:
    """A ranking source over one published version in Redis, keyed by row number."""

    def __init__(self, client: redis.Redis, version: str) -> None:
        self.client = client
        self.version = version
        self._history = client.register_script(_HISTORY_LUA)
        # Built once: a key per candidate would otherwise re-validate the version each time.
        self._neighbours_prefix = keys.neighbours_prefix(version)
        self._meta_prefix = keys.meta_prefix(version)
        # One source serves one request: lists read with the metadata are kept for the MMR.
        # Raw blobs: decoded only for the few candidates the MMR actually looks at.
        self._lists: dict[int, bytes | None] = {}

    def history_lists(
        self, ids: Sequence[str]
    ) -> list[tuple[int, Sequence[tuple[int, float]]] | None]:
        """Rows and neighbour lists of ``ids`` in one round trip (``None`` for unknown ids)."""
        if not ids:
            return []
        args = [self._neighbours_prefix, *ids]
        reply = call(lambda: self._history(keys=[keys.index_key(self.version)], args=args))
        out: list[tuple[int, Sequence[tuple[int, float]]] | None] = []
        for i in range(len(ids)):
            row, blob = reply[2 * i], reply[2 * i + 1]
            out.append((int(row), _pairs(blob)) if row else None)
        return out

    def neighbour_lists(self, keys_: Sequence[int]) -> list[Sequence[tuple[int, float]]]:
        """Neighbour lists of rows: those read with the metadata, the rest in one MGET."""
        missing = [row for row in keys_ if row not in self._lists]
        if missing:
            names = [f"{self._neighbours_prefix}{row}" for row in missing]
            blobs = call(lambda: self.client.mget(names))
            self._lists.update(zip(missing, blobs, strict=True))
        return [_pairs(self._lists[row]) for row in keys_]

    def describe(self, keys_: Sequence[int]) -> list[ArticleMeta | None]:
        """Metadata of rows, with their neighbour lists (the MMR's next read) in the same MGET."""
        if not keys_:
            return []
        names = [f"{self._meta_prefix}{row}" for row in keys_]
        names += [f"{self._neighbours_prefix}{row}" for row in keys_]
        blobs = call(lambda: self.client.mget(names))
        n = len(keys_)
        self._lists.update(zip(keys_, blobs[n:], strict=True))
        return [decode_meta(blob) if blob else None for blob in blobs[:n]]

    def latest(self, section: str | None, limit: int) -> list[str]:
        """Ids of the newest articles (optionally of one section), newest first."""
        key = (
            keys.latest_section_key(self.version, section)
            if section
            else keys.latest_key(self.version)
        )
        return [_text(item) for item in call(lambda: self.client.zrevrange(key, 0, limit - 1))]


def store_source(store: Store, version: str) -> ModelSource[ArticleMeta]:
    """A ranking source over any store, keyed by article id (one read per history item)."""

    def neighbours(article_id: str) -> list[tuple[str, float]] | None:
        found = store.neighbours(version, article_id)
        return None if found is None else [(n.id, n.score) for n in found]

    return ModelSource(neighbours, lambda ids: store.articles(version, ids))
