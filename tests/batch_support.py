"""Batch test helpers: an in-memory JobContext for driving the batch handler directly, holding jobs in the queue,
and waiting for a job the real runner (embedded in the app) is running."""

from __future__ import annotations

import time
import uuid
from typing import Any

from mistral_gateway.protocol.batch import TERMINAL_STATUSES
from mistral_gateway.services.container import Services

__all__ = ["FakeJob", "hold", "wait_done"]


class FakeJob:
    def __init__(self, payload: dict[str, Any], workspace: str = "ws",
                 checkpoint_data: dict[str, Any] | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.workspace = workspace
        self.payload = payload
        self.checkpoint_data = checkpoint_data
        self.saved: list[dict[str, Any]] = []
        self.cancel = False

    def checkpoint(self, data: dict[str, Any]) -> None:
        self.checkpoint_data = data
        self.saved.append(data)

    def cancelled(self) -> bool:
        return self.cancel


def hold(services: Services) -> None:
    """Created jobs stay QUEUED: nothing is enqueued for the runner (to see a queued job's behaviour)."""
    assert services.batch is not None
    services.batch.submit = lambda workspace_id, payload: None


def wait_done(get: Any, job_id: str, rounds: int = 600) -> dict[str, Any]:
    """Poll ``get(job_id)`` (returns the job as a dict) until it is terminal; a bounded wait, not a timing check."""
    for _ in range(rounds):
        job = get(job_id)
        if job["status"] in TERMINAL_STATUSES:
            return job
        time.sleep(0.05)
    raise AssertionError(f"batch {job_id} still {job['status']}")
