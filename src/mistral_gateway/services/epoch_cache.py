"""A bounded cache dropped whenever a ``FileEpoch`` moves (a write by any process of this node) and whose entries
expire after ``ttl`` seconds (writes by another node sharing the database): the model listings and the
fine-tuned model resolutions keep their hot reads off the database with it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from mistral_gateway.storage.epoch import Epoch

__all__ = ["EpochCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class EpochCache(Generic[K, V]):
    def __init__(self, epoch: Epoch, *, ttl: float, size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._epoch_file = epoch
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._epoch = epoch.current()

    def epoch(self) -> int:
        """Read before computing a value; hand it to ``put`` so a value read across a write is not kept."""
        return self._epoch_file.current()

    def get(self, key: K) -> V | None:
        """Event-loop safe (one ``stat``): the fresh value, else None."""
        epoch = self._epoch_file.current()
        with self._lock:
            if epoch != self._epoch:
                self._entries.clear()
                self._epoch = epoch
                return None
            hit = self._entries.get(key)
        if hit is None or self._clock() - hit[0] > self._ttl:
            return None
        return hit[1]

    def put(self, key: K, value: V, epoch: int) -> None:
        with self._lock:
            if epoch == self._epoch_file.current() == self._epoch:
                self._entries[key] = (self._clock(), value)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
