"""Incremental updates: upsert and delete articles in a fitted model's neighbour lists.

A newsroom publishes all day: a new story needs its related stories now, must show up in older
stories' boxes where it belongs, and a retracted story must vanish from every box. The
:class:`~models.incremental.index.IncrementalIndex` does this without a retrain. It keeps the
fitted vocabulary, IDF and SVD components, and for every article the *exact* candidate pool of
the full build (the top ``P`` blended scores, ties by the lower row, where ``P`` is the
re-ranking pool or ``k``), so that after any sequence of upserts and deletes every list equals
a full build over the live articles with the same fitted vectorisers
(:func:`~models.incremental.fitted.build_with_fitted`).

- :mod:`~models.incremental.fitted`: the fitted vectorisers, pool size, reference build, drift.
- :mod:`~models.incremental.matrix`: the growable matrix of blended rows (base + delta).
- :mod:`~models.incremental.pools`: every row's exact candidate pool and the reverse index.
- :mod:`~models.incremental.index`: the index itself (upsert, delete, lists).
- :mod:`~models.incremental.export`: the live corpus back to a model directory.

The two names below are re-exported for scripts/ and service/redis/writer.py.
"""

from __future__ import annotations

from models.incremental.export import save_incremental
from models.incremental.index import IncrementalIndex

__all__ = ["IncrementalIndex", "save_incremental"]
