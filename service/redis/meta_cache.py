"""The per-process cache of decoded article metadata (Redis mode), by row and by id."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from service.store.base import ArticleMeta


# /related spends most of its time moving and decoding the k + 1 metadata blobs it shows, and
# the same few thousand articles are shown over and over (every neighbour list of a corpus
# draws on it). A version's metadata changes only with its update seq (an incremental edit
# rewrites a row's blob and bumps the seq), so decoded metadata is kept per row for the
# (version, seq) last seen by current_version() and dropped whole when either changes; the
# API sees that pair at most VERSION_TTL late, the same bound as for the lists themselves.
class MetaCache:
    """Bounded LRUs of decoded metadata by row and of rows by article id, for one (version, seq).

    Knowing an article's row turns the list read into one plain GET instead of a script: a
    script call costs Redis several times a GET, and /related makes one per request.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[int, ArticleMeta] = OrderedDict()
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._scope: tuple[str, int] | None = None
        self._lock = threading.Lock()  # threaded gunicorn workers share one store

    def use(self, version: str, seq: int) -> None:
        """Make ``(version, seq)`` current, dropping everything cached for another one.

        A lower seq of the current version is ignored: two requests can read the live version
        around an update and report in either order, and going back would let a reader that
        fetched pre-update metadata store it into the scope it belongs to again.
        """
        with self._lock:
            scope = self._scope
            if scope is not None and scope[0] == version and seq < scope[1]:
                return
            if scope != (version, seq):
                self._rows.clear()
                self._ids.clear()
                self._scope = (version, seq)

    def row_of(self, article_id: str) -> int | None:
        """The cached row of an article (``None``: not cached)."""
        with self._lock:
            row = self._ids.get(article_id)
            if row is not None:
                self._ids.move_to_end(article_id)
            return row

    def remember_row(self, scope: tuple[str, int], article_id: str, row: int | None) -> None:
        """Remember (or, with ``None``, forget) an article's row read under ``scope``."""
        with self._lock:
            if row is None:
                self._ids.pop(article_id, None)
                return
            if self._scope != scope:
                return
            self._ids[article_id] = row
            self._ids.move_to_end(article_id)
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)

    @property
    def scope(self) -> tuple[str, int] | None:
        """The (version, seq) cached rows belong to."""
        return self._scope

    def get(self, rows: Sequence[int]) -> list[ArticleMeta | None]:
        """Cached metadata of each row (``None``: not cached)."""
        with self._lock:
            found = [self._rows.get(row) for row in rows]
            for row, meta in zip(rows, found, strict=True):
                if meta is not None:
                    self._rows.move_to_end(row)
            return found

    def put(self, scope: tuple[str, int], items: Sequence[tuple[int, ArticleMeta]]) -> None:
        """Remember rows read under ``scope`` (ignored if the scope moved on meanwhile).

        A reader that looked rows up before an update and fetched them after it would
        otherwise keep pre-update metadata for the whole next scope.
        """
        with self._lock:
            if self._scope != scope:
                return
            for row, meta in items:
                self._rows[row] = meta
                self._rows.move_to_end(row)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)
