"""Micro-batching: concurrent requests merged into calls of a blocking batch function, on dedicated worker threads.

Callers on any event loop ``await batcher.run(items)``. Their items go, in chunks of at most ``max_batch``, into one
shared FIFO. Each worker thread (one per function in ``fns``, e.g. one model replica each) takes jobs from the
front, calls its function once for the lot and hands each caller its slice of the results through the caller's
loop (``call_soon_threadsafe``). While workers compute, new requests pile up and form the next batches, so under
load batches fill without waiting.

How much a worker takes: its fair share of the outstanding work, ``ceil((queued + running) / workers)`` items, at
most ``max_batch`` and at least one job. Two requests at once run side by side; 32 at once split 16/16 instead of
one worker holding 31 while another ping-pongs a single client. A worker whose previous batch served several
requests (concurrent traffic) first waits up to ``max_wait`` for more to arrive; a lone client never waits.

A large request keeps at most ``workers + 1`` of its chunks queued at a time: it keeps every worker busy, and
requests arriving meanwhile get into the batches between its chunks instead of waiting for all of it.
The blocking work never runs on an event loop, and the batcher is bound to no loop (each job carries its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from mistral_gateway.engines.base import EngineBusy, EngineError

__all__ = ["BatchStats", "MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    calls: int = 0  # times a batch function ran
    items: int = 0  # items it processed
    largest: int = 0  # most items in one call


@dataclass(slots=True)
class _Job(Generic[T, R]):
    items: list[T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[R]]


class MicroBatcher(Generic[T, R]):
    def __init__(self, fns: Callable[[list[T]], list[R]] | Sequence[Callable[[list[T]], list[R]]], *,
                 max_batch: int = 64, max_wait: float = 0.002, max_queued: int = 4096, name: str = "batcher",
                 on_start: Callable[[], None] | None = None) -> None:
        self._fns = [fns] if callable(fns) else list(fns)
        if not self._fns or max_batch < 1 or max_queued < max_batch:
            raise ValueError("need at least one function, max_batch >= 1 and max_queued >= max_batch")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.name = name
        self._on_start = on_start
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._pending: deque[_Job[T, R]] = deque()
        self._queued = 0  # items waiting in ``_pending``
        self._running = 0  # items being computed
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._fns)

    @property
    def queued(self) -> int:
        return self._queued

    async def run(self, items: Sequence[T]) -> list[R]:
        """The batch function applied to ``items`` (results in the same order), batched with whatever else waits."""
        chunks = [list(items[i:i + self.max_batch]) for i in range(0, len(items), self.max_batch)]
        results: list[R] = []
        pending: deque[asyncio.Future[list[R]]] = deque()
        try:
            for chunk in chunks:
                pending.append(self._submit(chunk))
                if len(pending) > self.workers:
                    results += await pending.popleft()
            while pending:
                results += await pending.popleft()
        finally:
            for future in pending:  # cancelled or failed: the workers skip what is still queued
                future.cancel()
        return results

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the threads. Later ``run`` calls fail."""
        with self._cond:
            self._closed = True
            threads = list(self._threads)
            self._cond.notify_all()
        for thread in threads:
            thread.join(timeout)

    # -- the caller's side ------------------------------------------------------------------------------------
    def _submit(self, items: list[T]) -> asyncio.Future[list[R]]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closed:
                raise EngineError(f"{self.name} is closed")
            if self._queued + len(items) > self.max_queued:
                raise EngineBusy(f"{self.name} has {self._queued} inputs waiting (its limit is {self.max_queued}); "
                                 "retry shortly", retry_after=1.0)
            if not self._threads:
                self._start()
            self._pending.append(_Job(items, future.get_loop(), future))
            self._queued += len(items)
            self._cond.notify_all()
        return future

    def _start(self) -> None:
        for i, fn in enumerate(self._fns):
            name = self.name if self.workers == 1 else f"{self.name}-{i}"
            thread = threading.Thread(target=self._work, args=(fn,), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    # -- the worker threads -----------------------------------------------------------------------------------
    def _work(self, fn: Callable[[list[T]], list[R]]) -> None:
        if self._on_start is not None:
            self._on_start()
        concurrent = False  # did this worker's previous batch serve several requests?
        while True:
            batch = self._take(self.max_wait if concurrent else 0.0)
            if batch is None:
                return
            concurrent = len(batch) > 1
            size = sum(len(job.items) for job in batch)
            try:
                self._run(fn, batch)
            finally:
                with self._cond:
                    self._running -= size

    def _take(self, wait: float) -> list[_Job[T, R]] | None:
        """The next batch (None: closed and drained): the oldest jobs, up to this worker's fair share."""
        with self._cond:
            while True:
                while not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                deadline = time.monotonic() + wait
                while self._queued < self.max_batch and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)  # other workers may take everything meanwhile
                if self._pending:
                    break
                wait = 0.0
            share = self._share()
            batch = [self._pending.popleft()]
            size = len(batch[0].items)
            while self._pending and size + len(self._pending[0].items) <= share:
                job = self._pending.popleft()
                batch.append(job)
                size += len(job.items)
            self._queued -= size
            self._running += size
            if self._pending:
                self._cond.notify_all()  # the rest is for another worker
            return batch

    def _share(self) -> int:
        return min(self.max_batch, max(1, math.ceil((self._queued + self._running) / self.workers)))

    def _run(self, fn: Callable[[list[T]], list[R]], batch: list[_Job[T, R]]) -> None:
        live = [job for job in batch if not job.future.cancelled()]
        if not live:
            return
        items = [item for job in live for item in job.items]
        try:
            results = fn(items)
            if len(results) != len(items):
                raise EngineError(f"{self.name}: {len(items)} inputs gave {len(results)} results")
        except BaseException as exc:
            for job in live:
                _deliver(job, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        with self._cond:
            self.stats.calls += 1
            self.stats.items += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
        start = 0
        for job in live:
            _deliver(job, results[start:start + len(job.items)])
            start += len(job.items)


def _deliver(job: _Job[T, R], results: list[R] | None = None, *, exc: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the caller went away meanwhile
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(results or [])

    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
        job.loop.call_soon_threadsafe(settle)
