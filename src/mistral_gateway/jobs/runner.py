"""The job runner: up to ``workers`` jobs at a time on the event loop it is started on.

One dispatcher claims a job whenever a slot is free (idle, it polls with a cheap read every ``poll_seconds``, or at
once after ``notify()``); each job runs its handler as a task beside a heartbeat that renews the lease and passes a
cancel request on within ``heartbeat_seconds``. Database calls run in worker threads. ``stop()`` stops claiming,
lets running handlers finish for ``stop_grace_seconds``, then cancels them and gives their jobs back to the queue
(their checkpoints kept), so another worker resumes them at once.

It runs on the caller's loop rather than its own thread: handlers call the same services as requests, whose engines
and upstream clients belong to the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.config import Settings
from mistral_gateway.jobs.context import JobCancelled, JobContext, JobFailed, LeaseLost
from mistral_gateway.jobs.handlers import HandlerRegistry
from mistral_gateway.storage.jobs import JobRecord, JobRepository, JobStatus

__all__ = ["JobRunner", "RunnerOptions"]

log = logging.getLogger("mistral_gateway.jobs")
MAX_REASON = 2000  # characters of an exception's text kept as a job's failure reason


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    workers: int = 2
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 2.0
    poll_seconds: float = 1.0
    cancel_grace_seconds: float = 10.0  # a handler that ignores a cancel request is cancelled after this
    stop_grace_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerOptions:
        return cls(workers=settings.job_workers, lease_seconds=settings.job_lease_seconds,
                   heartbeat_seconds=settings.job_heartbeat_seconds, poll_seconds=settings.job_poll_seconds,
                   cancel_grace_seconds=settings.job_cancel_grace_seconds,
                   stop_grace_seconds=settings.job_stop_grace_seconds)


class JobRunner:
    def __init__(self, repo: JobRepository, handlers: HandlerRegistry, options: RunnerOptions | None = None, *,
                 clock: Callable[[], float] = time.time, name: str | None = None,
                 observe: Callable[[str, str, float], None] | None = None,
                 announce: Callable[[], None] | None = None) -> None:
        self.repo = repo
        self.announce = announce  # tells runners in other processes that a job was enqueued (the Redis bus)
        self._observe = observe  # (kind, outcome, seconds) of each job run that ends here: the metrics
        self.handlers = handlers
        self.options = options or RunnerOptions()
        self._clock = clock
        self.worker_id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], JobContext] = {}

    @property
    def started(self) -> bool:
        return self._dispatcher is not None

    def running(self) -> list[str]:
        return [ctx.id for ctx in self._running.values()]

    async def start(self) -> None:
        if self._dispatcher is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name="job-dispatcher")
        log.info("job runner %s: %d worker(s), kinds: %s", self.worker_id, self.options.workers,
                 ", ".join(self.handlers.kinds()) or "(none)")

    async def stop(self) -> None:
        if self._dispatcher is None:
            return
        self._stopping = True
        self.notify()
        await _quietly(self._dispatcher)
        self._dispatcher = None
        if self._running:
            await asyncio.wait(list(self._running), timeout=self.options.stop_grace_seconds)
        for task in list(self._running):
            task.cancel()  # _run gives the job back to the queue
        await asyncio.gather(*self._running, return_exceptions=True)

    def submit(self, workspace_id: str, kind: str, payload: dict[str, Any], *, job_id: str | None = None,
               max_attempts: int | None = None) -> JobRecord:
        """Enqueue a job (a blocking write: call it from a worker thread) and wake this runner if it runs here,
        and those of other processes through ``announce``; without it (or if the notice is lost) any worker sharing
        the database picks the job up within ``poll_seconds``."""
        job = self.repo.enqueue(workspace_id, kind, payload, now=self._clock(), max_attempts=max_attempts,
                                job_id=job_id)
        self.enqueued()
        return job

    def enqueued(self) -> None:
        """A job was saved (by ``submit`` or by a service writing its own job row): wake runners here and
        elsewhere. Blocking (a publish): call it from a worker thread."""
        self.notify()
        if self.announce is not None:
            self.announce()

    def notify(self) -> None:
        """A job was enqueued: claim now instead of at the next poll. Safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()  # before claiming: a notify() during the claim is not lost
            job = None
            if len(self._running) < self.options.workers:
                try:
                    job = await run_sync(self._claim)
                except Exception:
                    log.exception("claiming a job failed; retrying")
            if job is not None:
                self._launch(job)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.poll_seconds)

    def _claim(self) -> JobRecord | None:
        kinds, now = self.handlers.kinds(), self._clock()
        if not self.repo.has_work(kinds, now):
            return None
        return self.repo.claim(self.worker_id, kinds, self.options.lease_seconds, now)

    def _launch(self, job: JobRecord) -> None:
        ctx = JobContext(job, self.repo, self._clock)
        task = asyncio.create_task(self._run(ctx), name=f"job-{job.id}")
        self._running[task] = ctx

        def done(t: asyncio.Task[None]) -> None:
            self._running.pop(t, None)
            self.notify()  # a slot is free

        task.add_done_callback(done)

    async def _run(self, ctx: JobContext) -> None:
        handler = self.handlers.get(ctx.kind)
        assert handler is not None, "claims name only registered kinds"
        log.info("job %s (%s) started, attempt %d", ctx.id, ctx.kind, ctx.attempt)
        work = asyncio.create_task(handler(ctx), name=f"job-handler-{ctx.id}")
        beat = asyncio.create_task(self._heartbeat(ctx, work))
        began = time.monotonic()
        try:
            status, error = await self._outcome(ctx, work)
        except asyncio.CancelledError:  # the runner is stopping: hand the job back
            work.cancel()
            await _quietly(work)
            await self._settle(ctx, None, None)
            raise
        finally:
            beat.cancel()
            await _quietly(beat)
        if self._observe is not None:
            self._observe(ctx.kind, status or "lease_lost", time.monotonic() - began)
        await self._settle(ctx, status, error)

    async def _outcome(self, ctx: JobContext, work: asyncio.Task[None]) -> tuple[str | None, str | None]:
        """The final status and reason; status None when the lease was lost (the job is someone else's now)."""
        try:
            await asyncio.shield(work)
        except LeaseLost:
            return None, None
        except JobCancelled:
            return JobStatus.CANCELLED, None
        except asyncio.CancelledError:
            if work.cancelled() and not ctx.cancelled():  # our heartbeat lost the lease and cancelled it
                return None, None
            if work.cancelled():  # a handler ignoring its cancel request, cut off by the heartbeat
                return JobStatus.CANCELLED, None
            raise  # the runner itself is being cancelled (stop)
        except JobFailed as exc:
            return JobStatus.FAILED, str(exc)[:MAX_REASON] or "failed"
        except Exception as exc:
            log.exception("job %s (%s) failed", ctx.id, ctx.kind)
            return JobStatus.FAILED, f"{type(exc).__name__}: {exc}"[:MAX_REASON]
        return (JobStatus.CANCELLED if ctx.cancelled() else JobStatus.SUCCEEDED), None

    async def _heartbeat(self, ctx: JobContext, work: asyncio.Task[None]) -> None:
        opts = self.options
        cancel_deadline: float | None = None
        while not work.done():
            await asyncio.sleep(opts.heartbeat_seconds)
            try:
                beat = await run_sync(self.repo.heartbeat, ctx.id, ctx.lease_id, opts.lease_seconds, self._clock())
            except Exception:
                log.exception("heartbeat of job %s failed; retrying", ctx.id)
                continue
            if not beat.owned:
                log.warning("job %s: lease lost (taken over or ended elsewhere); stopping it here", ctx.id)
                work.cancel()
                return
            if beat.cancel_requested and not ctx.cancelled():
                ctx.request_cancel()
                cancel_deadline = time.monotonic() + opts.cancel_grace_seconds
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                log.warning("job %s ignored its cancel request for %.0f s; cancelling it", ctx.id,
                            opts.cancel_grace_seconds)
                work.cancel()
                return

    async def _settle(self, ctx: JobContext, status: str | None, error: str | None) -> None:
        now = self._clock()
        try:
            if status is None:
                if not self._stopping:
                    return  # the lease was lost: the job is another worker's now
                if not ctx.cancelled():  # stopping: hand the job on
                    if await run_sync(self.repo.release, ctx.id, ctx.lease_id, now):
                        log.info("job %s handed back to the queue (worker stopping)", ctx.id)
                    return
                status = JobStatus.CANCELLED  # asked to stop anyway: no point in handing it on
            if await run_sync(self.repo.finish, ctx.id, ctx.lease_id, status, now, error):
                log.info("job %s %s%s", ctx.id, status, f": {error}" if error else "")
        except Exception:  # the lease lapses on its own and recovery takes over
            log.exception("recording the end of job %s failed", ctx.id)


async def _quietly(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
