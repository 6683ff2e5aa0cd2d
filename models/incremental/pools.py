"""Candidate pools: every row's exact prefix of its ranking of live rows, kept under changes.

Each row stores at most ``P + spare`` candidates (blended score, ties by the lower row), and
always at least the ``P`` of its pool unless every candidate is stored. A new row enters every
prefix it beats; a deleted row leaves every prefix that holds it (found through a reverse
index), the next stored candidate moving up. Only a prefix that falls below ``P`` is
recomputed, by one blocked multiplication against the live rows.
"""

from __future__ import annotations

import numpy as np

from models.incremental.matrix import BlendedRows, grown

# Pools refilled per multiplication: bounds the exact delta product to (rows x delta rows).
REFILL_BLOCK_ROWS = 256
# Rows per multiplication when the pools are first built (there is no delta yet).
BUILD_BLOCK_ROWS = 4096

_EMPTY_ROWS = np.zeros(0, dtype=np.int32)


class CandidatePools:
    """Per row: the exact top ``pool + spare`` candidates, and who holds whom.

    ``ids`` (int32, -1 padded) and ``scores`` (float64, NaN padded) hold the prefixes; the
    first ``pool`` columns are the pool the final lists are made from. Liveness is the
    index's: every method that ranks is given the ``alive`` mask of the rows so far.
    """

    def __init__(
        self, rows: BlendedRows, capacity: int, *, pool: int, spare: int, min_score: float
    ) -> None:
        self._rows = rows
        self.pool = pool
        self.width = pool + spare
        self._min_score = min_score
        self.ids = np.full((capacity, self.width), -1, dtype=np.int32)
        self.scores = np.full((capacity, self.width), np.nan, dtype=np.float64)
        self._length = np.zeros(capacity, dtype=np.int64)
        # True when the stored prefix holds every candidate the row has.
        self._complete = np.ones(capacity, dtype=bool)
        self._reverse: list[np.ndarray] = []

    def build(self, alive: np.ndarray) -> None:
        """Compute the prefixes of the ``len(alive)`` rows so far, and the reverse index."""
        n = alive.size
        rows = np.arange(n)
        for start in range(0, n, BUILD_BLOCK_ROWS):
            block = rows[start : start + BUILD_BLOCK_ROWS]
            self.store(block, *self.exact(block, alive), reverse=False)
        self._reverse = _reverse_index(self.ids[:n], n)

    def load(self, ids: np.ndarray, scores: np.ndarray) -> None:
        """Take the rows' exact prefixes as computed elsewhere (``fit(keep_pools=True)``, the
        same ranking), at least ``P + spare`` wide, instead of :meth:`build`."""
        n, width = ids.shape
        if width < self.width:
            raise ValueError(f"saved pools hold {width} candidates per row; need {self.width}")
        self.store(np.arange(n), ids[:, : self.width], scores[:, : self.width], reverse=False)
        self._reverse = _reverse_index(self.ids[:n], n)

    def grow(self, capacity: int) -> None:
        """Enlarge every per-row array to ``capacity`` rows."""
        self.ids = grown(self.ids, capacity, -1)
        self.scores = grown(self.scores, capacity, np.nan)
        self._length = grown(self._length, capacity, 0)
        self._complete = grown(self._complete, capacity, True)

    def add_row(self) -> None:
        """Make room in the reverse index for a new row (held by no prefix yet)."""
        self._reverse.append(_EMPTY_ROWS)

    def insert(self, row: int, scores: np.ndarray, alive: np.ndarray) -> set[int]:
        """Store the new row's prefix and enter it into every prefix it beats.

        ``scores``: the new row's blended scores against every row before it. Returns the
        rows whose pool (the first ``P``) changed.
        """
        n_before = scores.size
        own_ids, own_scores = self.select(scores, alive, None)
        length = self._length[:n_before]
        last = self.scores[np.arange(n_before), np.maximum(length - 1, 0)]
        eligible = alive[:n_before] & (scores > 0) & (scores >= self._min_score)
        # The new row has the highest index, so it loses every tie. A complete prefix takes it
        # anywhere; a partial one only where it beats the last stored candidate.
        eligible &= self._complete[:n_before] | (scores > last)
        targets = np.flatnonzero(eligible)
        old_ids = self.ids[targets]
        old_scores = self.scores[targets]
        new_score = scores[targets]
        # Equal scores stay ahead (lower rows); NaN padding compares False and so stays behind.
        position = (old_scores >= new_score[:, None]).sum(axis=1)
        full = self._length[targets] == self.width
        # A full complete prefix that the new row does not enter stops being complete.
        self._complete[targets[full]] = False
        entered = position < self.width
        targets, position, full = targets[entered], position[entered], full[entered]
        old_ids, old_scores, new_score = old_ids[entered], old_scores[entered], new_score[entered]
        cols = np.arange(self.width)
        source = np.maximum(np.where(cols < position[:, None], cols, cols - 1), 0)
        new_ids = np.take_along_axis(old_ids, source, axis=1)
        new_scores = np.take_along_axis(old_scores, source, axis=1)
        new_ids[np.arange(targets.size), position] = row
        new_scores[np.arange(targets.size), position] = new_score
        self.ids[targets] = new_ids
        self.scores[targets] = new_scores
        self._length[targets] = np.minimum(self._length[targets] + 1, self.width)
        # Reverse index: each target gained the new row; a full one lost its last candidate.
        for target, evicted in zip(targets[full].tolist(), old_ids[full, -1].tolist(), strict=True):
            holders = self._reverse[evicted]
            self._reverse[evicted] = holders[holders != target]
        self._reverse[row] = targets.astype(np.int32)
        self.store(np.array([row]), own_ids[None, :], own_scores[None, :])
        return set(targets[position < self.pool].tolist())

    def remove(self, row: int, alive: np.ndarray) -> set[int]:
        """Take a retired row (already not ``alive``) out of every prefix; return the rows
        whose pool changed."""
        self.store(np.array([row]), np.full((1, self.width), -1), np.full((1, self.width), np.nan))
        self._complete[row] = True
        holders = np.unique(self._reverse[row])
        self._reverse[row] = _EMPTY_ROWS
        if holders.size == 0:
            return set()
        # Close the gap the row leaves in each holder's prefix: the next candidate moves up.
        ids = self.ids[holders]
        scores = self.scores[holders]
        column = np.argmax(ids == row, axis=1)
        cols = np.arange(self.width)
        source = np.where(cols < column[:, None], cols, np.minimum(cols + 1, self.width - 1))
        ids = np.take_along_axis(ids, source, axis=1)
        scores = np.take_along_axis(scores, source, axis=1)
        ids[:, -1] = -1
        scores[:, -1] = np.nan
        self.ids[holders] = ids
        self.scores[holders] = scores
        self._length[holders] -= 1
        short = holders[~self._complete[holders] & (self._length[holders] < self.pool)]
        for start in range(0, short.size, REFILL_BLOCK_ROWS):
            block = short[start : start + REFILL_BLOCK_ROWS]
            self.store(block, *self.exact(block, alive))
        return set(holders[column < self.pool].tolist())

    def store(
        self, rows: np.ndarray, ids: np.ndarray, scores: np.ndarray, *, reverse: bool = True
    ) -> None:
        """Replace whole exact prefixes (their full top ``P + spare``), updating the reverse."""
        for i, row in enumerate(rows.tolist() if reverse else ()):
            old = self.ids[row]
            new = ids[i]
            old_set = set(old[old >= 0].tolist())
            new_set = set(new[new >= 0].tolist())
            for member in old_set - new_set:
                holders = self._reverse[member]
                self._reverse[member] = holders[holders != row]
            for member in new_set - old_set:
                self._reverse[member] = np.append(self._reverse[member], np.int32(row))
        self.ids[rows] = ids
        self.scores[rows] = scores
        length = (np.asarray(ids) >= 0).sum(axis=1)
        self._length[rows] = length
        # A freshly computed prefix shorter than its room holds every candidate there is.
        self._complete[rows] = length < self.width

    def select(
        self, scores: np.ndarray, alive: np.ndarray, own: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``P + spare`` of a score vector over live rows: ties by lower row."""
        n = scores.size
        width = self.width
        valid = alive[:n] & (scores > 0) & (scores >= self._min_score)
        if own is not None:
            valid[own] = False
        cand = np.flatnonzero(valid)
        values = scores[cand]
        if cand.size > width:
            # Keep everything tied with the last place, then order exactly.
            threshold = np.partition(values, cand.size - width)[cand.size - width]
            keep = values >= threshold
            cand, values = cand[keep], values[keep]
        order = np.lexsort((cand, -values))[:width]
        ids = np.full(width, -1, dtype=np.int32)
        out = np.full(width, np.nan, dtype=np.float64)
        ids[: order.size] = cand[order]
        out[: order.size] = values[order]
        return ids, out

    def exact(self, rows: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``P + spare`` of live ``rows`` (sorted) against every live row."""
        query = self._rows.rows(rows)
        b = rows.size
        width = self.width
        local, cols, data, full, row_min = self._rows.products(query, width)
        keep = alive[cols] & (cols != rows[local]) & (data > 0) & (data >= self._min_score)
        local, cols, data = local[keep], cols[keep], data[keep]
        order = np.lexsort((cols, -data, local))
        local, cols, data = local[order], cols[order], data[order]
        starts = np.searchsorted(local, np.arange(b))
        rank = np.arange(local.size) - starts[local]
        kept = rank < width
        ids = np.full((b, width), -1, dtype=np.int32)
        scores = np.full((b, width), np.nan, dtype=np.float64)
        ids[local[kept], rank[kept]] = cols[kept]
        scores[local[kept], rank[kept]] = data[kept]
        # The library cut a full row at its smallest score; unseen base rows score at most
        # that. Safe only if the kept last place beats it (NaN: not full, so not safe).
        last = scores[:, -1]
        suspicious = full & (row_min >= self._min_score) & ~(last > row_min)
        for i in np.flatnonzero(suspicious):
            vector = query[int(i)]
            ids[i], scores[i] = self.select(
                self._rows.scores_against_all(vector), alive, int(rows[i])
            )
        return ids, scores


def _reverse_index(pool_ids: np.ndarray, n: int) -> list[np.ndarray]:
    """For each row, the rows whose pool holds it (int32 arrays)."""
    holders = np.repeat(np.arange(pool_ids.shape[0], dtype=np.int32), pool_ids.shape[1])
    members = pool_ids.ravel()
    valid = members >= 0
    holders, members = holders[valid], members[valid]
    order = np.argsort(members, kind="stable")
    counts = np.bincount(members, minlength=n)
    return list(np.split(holders[order], np.cumsum(counts)[:-1])) if n else []
