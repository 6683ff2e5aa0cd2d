"""The one kind of lock the batch jobs take: a token under ``SET NX PX``, released only by its
owner, kept alive while held.

Publish and rollback hold :data:`service.redis.keys.PUBLISH_LOCK` and refresh it between batches
(:meth:`TokenLock.refresh`); the update writer holds :data:`service.redis.keys.UPDATE_LOCK` for
as long as it runs, refreshed by a thread (:meth:`TokenLock.keep_alive`), because loading a
model for a new version takes longer than the lock's time to live.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading

import redis

from service.redis import scripts
from service.redis.client import ANY_ERROR, TRANSIENT, text, with_retry


class TokenLock:
    """A lock on ``key`` identified by a random token (host and pid first, so "who holds it"
    is answered with a GET)."""

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self.lost = threading.Event()  # set by keep_alive's thread when the lock is gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh = client.register_script(scripts.REFRESH_LUA)
        self._release = client.register_script(scripts.RELEASE_LUA)

    def acquire(self) -> bool:
        """Take the lock; False when someone else holds it."""
        ok = with_retry(lambda: self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        # A retried SET may have succeeded before its reply was lost: then the lock is ours.
        return bool(ok) or self.holder() == self.token

    def holder(self) -> str | None:
        """The token holding the lock now (``None``: free)."""
        value = with_retry(lambda: self.client.get(self.key))
        return None if value is None else text(value)

    def refresh(self) -> bool:
        """Extend the lock by its TTL; False when it is no longer ours."""
        return bool(with_retry(lambda: self._refresh_once()))

    def _refresh_once(self) -> object:
        return self._refresh(keys=[self.key], args=[self.token, self.ttl_ms])

    def keep_alive(self, every_s: float) -> None:
        """Refresh from a daemon thread every ``every_s`` until released; a refresh that finds
        the lock gone sets :attr:`lost` and stops."""
        self.lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, args=(every_s,), name=f"lock {self.key}", daemon=True
        )
        self._thread.start()

    def _refresh_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                held = self._refresh_once()
            except TRANSIENT:
                continue  # Redis is away: if it stays away past the TTL, the next try says so
            if not held:
                self.lost.set()
                return

    def stop_refreshing(self) -> None:
        """End the keep-alive thread (if any) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def release(self) -> None:
        """Stop refreshing and delete the lock if it is still ours."""
        self.stop_refreshing()
        try:
            self._release(keys=[self.key], args=[self.token])
        except ANY_ERROR:
            pass  # the lock expires by itself
