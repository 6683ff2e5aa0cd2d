"""The per-process cache of rendered ``/related`` answers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

# A rendered body, its ETag, the instant (epoch s) from which it may be wrong, and the check
# the stale cache asks before serving it through an outage (service/rules/boxes.py recheck).
Cached = tuple[bytes, str, float, Callable[[], bool]]


# A version's stored data changes only by incremental updates, each of which bumps its ``seq``,
# and the rules only with the rules seq: an answer for (version, seq, rules seq, query) stays
# right until one of them moves (then it simply misses) or the clock reaches its fresh_until.
class ResponseCache:
    """A bounded LRU of rendered answers, keyed by model version, rules seq and normalised
    query; each entry is ``(body, etag, fresh_until, check)`` and is served only before
    ``fresh_until`` (epoch s: when a rule window, an embargo or an expiry changes it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], Cached] = OrderedDict()
        self._lock = threading.Lock()  # Flask's dev server and threaded workers share it

    def get(self, key: tuple[str, str], now: float) -> Cached | None:
        """The cached entry still right at ``now``, or ``None``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if now >= entry[2]:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], body: Cached) -> None:
        """Remember a body, dropping the least recently used beyond ``size``."""
        with self._lock:
            self._data[key] = body
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
