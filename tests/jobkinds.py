"""Job kinds for tests, importable by the test process and by worker subprocesses (``tests`` on PYTHONPATH); settings
name them in ``job_handlers``, e.g. ``{"steps": "jobkinds:steps"}``.

Every step appends a line to a log file before it is checkpointed, so a test can tell whether a step ran twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from mistral_gateway.jobs import JobCancelled, JobContext, JobFailed
from mistral_gateway.storage.jobs import ACTIVE, JobRecord, JobRepository

__all__ = ["boom", "busy", "ended", "steps", "stubborn"]


def ended(repo: JobRepository, ws: str, job_id: str) -> Callable[[], JobRecord | None]:
    """A check for the tests' wait loops: the job once it has finished, else None."""
    def check() -> JobRecord | None:
        job = repo.get(ws, job_id)
        return job if job is not None and job.status not in ACTIVE else None
    return check


def _append(path: str, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


async def _hold(job: JobContext, gate: Path) -> None:
    while not gate.exists():
        if job.cancelled():
            raise JobCancelled
        await asyncio.sleep(0.02)


async def steps(job: JobContext) -> None:
    """payload: steps, log; optional pause_after (a step count), gate and paused (paths): after that many steps
    the handler writes ``paused`` (its attempt number) and waits for ``gate`` to exist."""
    p = job.payload
    done = (job.checkpoint_data or {}).get("done", 0)
    for i in range(done, p["steps"]):
        if job.cancelled():
            raise JobCancelled
        await job.run_blocking(_append, p["log"], f"{job.id} step {i} attempt {job.attempt}\n")
        await job.checkpoint({"done": i + 1})
        if p.get("pause_after") == i + 1 and not Path(p["gate"]).exists():
            Path(p["paused"]).write_text(str(job.attempt))
            await _hold(job, Path(p["gate"]))


def _spin(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


async def busy(job: JobContext) -> None:
    """CPU work in worker threads until ``gate`` exists; writes ``started`` first and counts rounds in the log."""
    p = job.payload
    Path(p["started"]).write_text(job.id)
    rounds = 0
    while not Path(p["gate"]).exists():
        if job.cancelled():
            raise JobCancelled
        await job.run_blocking(_spin, 200_000)
        rounds += 1
    _append(p["log"], f"{rounds}\n")


async def stubborn(job: JobContext) -> None:
    """Ignores cancel requests: the runner must cut it off."""
    Path(job.payload["started"]).write_text(job.id)
    while True:
        await asyncio.sleep(0.02)


async def boom(job: JobContext) -> None:
    if job.payload.get("clean"):
        raise JobFailed("the input was unusable")
    raise ValueError("step 3 exploded")
