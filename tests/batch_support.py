"""A stand-in for the job runner in batch tests (the real one is wired by the service container at merge): every
submitted batch runs at once as a task on the server's event loop, with an in-memory JobContext."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from mistral_gateway.protocol.batch import TERMINAL_STATUSES
from mistral_gateway.services.container import Services

__all__ = ["FakeJob", "run_inline", "wait_done"]


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


def run_inline(services: Services) -> list[asyncio.Task[None]]:
    """Make ``services.batch`` run each created job right away; returns the tasks started."""
    assert services.batch is not None
    batch = services.batch
    tasks: list[asyncio.Task[None]] = []

    def submit(workspace_id: str, payload: dict[str, Any]) -> None:
        tasks.append(asyncio.get_running_loop().create_task(batch.handler(FakeJob(payload, workspace_id))))

    batch.submit = submit
    return tasks


def wait_done(get: Any, job_id: str, rounds: int = 600) -> dict[str, Any]:
    """Poll ``get(job_id)`` (returns the job as a dict) until it is terminal; a bounded wait, not a timing check."""
    for _ in range(rounds):
        job = get(job_id)
        if job["status"] in TERMINAL_STATUSES:
            return job
        time.sleep(0.05)
    raise AssertionError(f"batch {job_id} still {job['status']}")
