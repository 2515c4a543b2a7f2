"""One daemon thread owned by a background component (the usage writer, the lease renewer, the Redis notice
listener): started at most once, never again after a stop, and stopped by an event its loop waits on."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["BackgroundThread"]


class BackgroundThread:
    def __init__(self, target: Callable[[], None], name: str, *, join_timeout: float = 5.0) -> None:
        self.stopping = threading.Event()  # the target's loop waits on it (``while not stopping.wait(t)``)
        self._target = target
        self._name = name
        self._join_timeout = join_timeout
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Idempotent; does nothing once stopped (a stopped component stays stopped)."""
        with self._lock:
            if self._thread is None and not self.stopping.is_set():
                self._thread = threading.Thread(target=self._target, name=self._name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait for it (at most ``join_timeout`` seconds)."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_timeout)
