"""What a job handler sees: ``async def handler(job: JobContext) -> None``.

The handler reads ``payload`` and ``checkpoint_data`` (what an earlier attempt saved: a resumed job skips the work it
records as done), calls ``checkpoint`` after each finished step, checks ``cancelled()`` between steps, and runs
blocking or CPU-heavy work through ``run_blocking`` so the event loop (and the API on it) stays responsive. The
runner keeps the lease alive; returning ends the job SUCCEEDED (CANCELLED if a cancel was asked for), raising
``JobCancelled`` ends it CANCELLED, ``JobFailed`` or any other exception FAILED with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from anyio.to_thread import run_sync

from mistral_gateway.storage.jobs import JobRecord, JobRepository

__all__ = ["MAX_CHECKPOINT_BYTES", "JobCancelled", "JobContext", "JobFailed", "LeaseLost"]

T = TypeVar("T")
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024  # checkpoints are progress markers; bulk results belong in files


class JobCancelled(Exception):
    """Raise to end the job CANCELLED (after a cancel request)."""


class JobFailed(Exception):
    """Raise to end the job FAILED with this reason, without retrying."""


class LeaseLost(Exception):
    """This worker no longer owns the job (its lease lapsed and it was taken over, or it ended elsewhere)."""


class JobContext:
    def __init__(self, record: JobRecord, repo: JobRepository, clock: Callable[[], float]) -> None:
        assert record.lease_id is not None, "a context is made for a claimed job"
        self.record = record
        self.id = record.id
        self.kind = record.kind
        self.workspace_id = record.workspace_id
        self.payload = record.payload
        self.attempt = record.attempts  # 1 on the first run; more after a crash or a lapsed lease
        self.lease_id: str = record.lease_id
        self._repo = repo
        self._clock = clock
        self._checkpoint = record.checkpoint
        self._cancel = threading.Event()  # set by the runner's heartbeat; read from any thread

    @property
    def workspace(self) -> str:
        """The workspace's id, as every repository and service takes it (alias of ``workspace_id``)."""
        return self.workspace_id

    @property
    def checkpoint_data(self) -> dict[str, Any] | None:
        return self._checkpoint

    async def checkpoint(self, data: dict[str, Any]) -> None:
        """Save progress durably (replaces the previous checkpoint). Raises ``LeaseLost`` if another worker owns
        the job now: the caller must stop, its work would be done twice."""
        if len(orjson.dumps(data)) > MAX_CHECKPOINT_BYTES:
            raise ValueError(f"checkpoint larger than {MAX_CHECKPOINT_BYTES} bytes")
        saved = await run_sync(self._repo.save_checkpoint, self.id, self.lease_id, data, self._clock())
        if not saved:
            raise LeaseLost(self.id)
        self._checkpoint = data

    def cancelled(self) -> bool:
        """True once a cancel was requested (seen by the next heartbeat, a few seconds at most)."""
        return self._cancel.is_set()

    def request_cancel(self) -> None:  # the runner's side
        self._cancel.set()

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread: the event loop keeps serving requests meanwhile."""
        return await run_sync(fn, *args, abandon_on_cancel=True)
