"""Running one batch job: the handler the job runner calls for kind ``"batch"``.

Lines stream from the blob store; each chunk of ``checkpoint_every`` lines runs with up to ``concurrency`` requests
in flight (the model's engine slots, so the engine batches them), its result lines are committed as part blobs and
the position checkpointed, so a resumed job skips what it finished. The part blobs become the output and error files
when the job ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from anyio.to_thread import run_sync

from mistral_gateway.protocol.batch import TERMINAL_STATUSES
from mistral_gateway.services.batch_lines import (
    LineError,
    error_line,
    line_endpoint,
    parse_line,
    result_line,
    split_lines,
)
from mistral_gateway.storage.batch import BatchJobRecord, BatchRepository
from mistral_gateway.storage.blobs import BlobStore
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.records import FileRecord

__all__ = ["BatchDeps", "Execute", "JobContextLike", "run_batch"]

Execute = Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
log = logging.getLogger(__name__)
MAX_ERROR_KINDS = 20  # distinct messages kept in the job's ``errors``


class JobContextLike(Protocol):
    """What the job runner hands a handler (its JobContext); tests pass a fake."""

    id: str
    workspace: str
    payload: dict[str, Any]
    checkpoint_data: dict[str, Any] | None

    def checkpoint(self, data: dict[str, Any]) -> Any: ...  # may return an awaitable
    def cancelled(self) -> bool: ...


class BatchInputMissing(Exception):
    pass


@dataclass
class BatchDeps:
    repo: BatchRepository
    files: FileRepository
    blobs: BlobStore
    execute_for: Callable[[BatchJobRecord], Execute]
    concurrency_for: Callable[[BatchJobRecord], int]
    max_line_bytes: int = 1024 * 1024
    checkpoint_every: int = 64
    poll_seconds: float = 0.5  # how often a running chunk looks for a cancel request or the deadline
    clock: Callable[[], float] = time.time


@dataclass
class _State:
    """Where a job is: lines consumed, counters, error kinds and the committed part blobs (out, err)."""

    next: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    parts: list[list[str | None]] = field(default_factory=list)

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> _State:
        return cls(**data) if data else cls()

    def dump(self) -> dict[str, Any]:
        return {"next": self.next, "succeeded": self.succeeded, "failed": self.failed, "errors": self.errors,
                "parts": self.parts}

    def error(self, message: str) -> None:
        if message in self.errors or len(self.errors) < MAX_ERROR_KINDS:
            self.errors[message] = self.errors.get(message, 0) + 1


async def run_batch(ctx: JobContextLike, deps: BatchDeps) -> None:
    job = await run_sync(deps.repo.get, ctx.payload["batch_id"])
    if job is None or job.status in TERMINAL_STATUSES:
        return
    state = _State.load(ctx.checkpoint_data)
    started = job.started_at or int(deps.clock())
    await run_sync(lambda: deps.repo.update(job.id, only_if=("QUEUED",), status="RUNNING", started_at=started))
    deadline = started + job.timeout_hours * 3600
    outcome = "SUCCESS"
    try:
        outcome = await _run_lines(ctx, deps, job, state, deadline)
    except BatchInputMissing as exc:
        state.error(str(exc))
        outcome = "FAILED"
    await _finish(deps, job, state, outcome)


async def _stop_reason(ctx: JobContextLike, deps: BatchDeps, job_id: str, deadline: float) -> str | None:
    # anything but RUNNING: a cancel request, or a cancel that won the race against this run's start
    if ctx.cancelled() or await run_sync(deps.repo.status, job_id) != "RUNNING":
        return "CANCELLED"
    return "TIMEOUT_EXCEEDED" if deps.clock() >= deadline else None


async def _run_lines(ctx: JobContextLike, deps: BatchDeps, job: BatchJobRecord, state: _State,
                     deadline: float) -> str:
    lines = split_lines(_input_chunks(deps, job), deps.max_line_bytes)
    if state.next:
        await run_sync(lambda: next(islice(lines, state.next - 1, None), None))  # finished before a restart
    execute = deps.execute_for(job)
    limit = asyncio.Semaphore(max(1, deps.concurrency_for(job)))
    while True:
        if reason := await _stop_reason(ctx, deps, job.id, deadline):
            return reason
        chunk = await run_sync(lambda: list(islice(lines, deps.checkpoint_every)))
        if not chunk:
            return "SUCCESS"
        results, stopped = await _run_chunk(ctx, deps, job, state.next, chunk, execute, limit, deadline)
        await _commit(ctx, deps, job, state, results, len(chunk))
        if stopped:
            return stopped


async def _run_chunk(ctx: JobContextLike, deps: BatchDeps, job: BatchJobRecord, first: int,
                     chunk: list[bytes | None], execute: Execute, limit: asyncio.Semaphore,
                     deadline: float) -> tuple[list[tuple[bool, bytes, str | None]], str | None]:
    async def one(n: int, raw: bytes | None) -> tuple[bool, bytes, str | None] | None:
        if raw is not None and not raw.strip():
            return None  # a blank line is no request
        parsed = parse_line(raw, deps.max_line_bytes, job.model, job.agent_id)
        if isinstance(parsed, LineError):
            return False, error_line(job.id, n, parsed.custom_id, parsed.message, "INVALID_BATCH_LINE"), \
                parsed.message
        async with limit:
            try:
                status, body = await execute(line_endpoint(job.endpoint, job.agent_id), parsed.body)
            except Exception:  # the executor maps every known error to a status; this is a bug, kept per line
                log.exception("batch %s line %d: unexpected error", job.id, n)
                status, body = 500, {"object": "error", "message": "internal error", "type": "server_error",
                                     "param": None, "code": "INTERNAL_ERROR"}
        if 200 <= status < 300:
            return True, result_line(job.id, n, parsed.custom_id, status, body), None
        message = str(body.get("message") or body.get("detail") or f"status {status}")[:512]
        code = body.get("code") if isinstance(body.get("code"), str) else None
        return False, error_line(job.id, n, parsed.custom_id, message, code, (status, body)), message

    tasks = [asyncio.ensure_future(one(first + i, raw)) for i, raw in enumerate(chunk)]
    pending = set(tasks)
    stopped = None
    while pending:
        _, pending = await asyncio.wait(pending, timeout=deps.poll_seconds)
        if pending and (stopped := await _stop_reason(ctx, deps, job.id, deadline)):
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            break
    done = [t.result() for t in tasks if t.done() and not t.cancelled()]
    return [r for r in done if r is not None], stopped


async def _commit(ctx: JobContextLike, deps: BatchDeps, job: BatchJobRecord, state: _State,
                  results: list[tuple[bool, bytes, str | None]], consumed: int) -> None:
    def write(lines: list[bytes]) -> str | None:
        if not lines:
            return None
        writer = deps.blobs.writer()
        for line in lines:
            writer.write(line)
        return writer.commit().key

    out = await run_sync(write, [line for ok, line, _ in results if ok])
    err = await run_sync(write, [line for ok, line, _ in results if not ok])
    if out or err:
        state.parts.append([out, err])
    for ok, _, message in results:
        if ok:
            state.succeeded += 1
        else:
            state.failed += 1
            state.error(message or "error")
    state.next += consumed
    # The checkpoint first: counters the job shows are then never ahead of what a resumed run skips (a worker killed
    # between the two writes would otherwise redo lines the job already counted as done).
    saved = ctx.checkpoint(state.dump())
    if inspect.isawaitable(saved):
        await saved
    await run_sync(lambda: deps.repo.update(job.id, completed_requests=state.succeeded + state.failed,
                                            succeeded_requests=state.succeeded, failed_requests=state.failed))


async def _finish(deps: BatchDeps, job: BatchJobRecord, state: _State, outcome: str) -> None:
    def finish() -> None:
        now = int(deps.clock())
        output = _merge(deps, job, [p[0] for p in state.parts], "batch_result", "output", now)
        errors = _merge(deps, job, [p[1] for p in state.parts], "batch_error", "error", now)
        completed = state.succeeded + state.failed
        values: dict[str, Any] = dict(
            status=outcome, completed_at=now, completed_requests=completed, succeeded_requests=state.succeeded,
            failed_requests=state.failed, output_file=output, error_file=errors,
            errors=[{"message": m, "count": c} for m, c in state.errors.items()])
        if outcome == "SUCCESS":
            values["total_requests"] = completed  # the count of non-blank lines, now known exactly
        deps.repo.update(job.id, only_if=("QUEUED", "RUNNING", "CANCELLATION_REQUESTED"), **values)
        for key in (k for part in state.parts for k in part if k):
            deps.blobs.delete(key)

    await run_sync(finish)


def _merge(deps: BatchDeps, job: BatchJobRecord, keys: list[str | None], sample_type: str, kind: str,
           now: int) -> str | None:
    """The part blobs, concatenated as a new file of the workspace (streamed, never whole in memory)."""
    keys = [k for k in keys if k]
    if not keys:
        return None
    writer = deps.blobs.writer()
    lines = 0
    for key in keys:
        for chunk in deps.blobs.read(key):
            writer.write(chunk)
            lines += chunk.count(b"\n")
    info = writer.commit()
    record = FileRecord(id=str(uuid.uuid4()), workspace_id=job.workspace_id, filename=f"batch-{job.id}-{kind}.jsonl",
                        bytes=info.size, created_at=now, purpose="batch", sample_type=sample_type, source="mistral",
                        num_lines=lines, mimetype="application/jsonl", sha256=info.sha256, blob_key=info.key,
                        expires_at=None, visibility="workspace")
    deps.files.add(record)
    return record.id


def _input_chunks(deps: BatchDeps, job: BatchJobRecord) -> Iterator[bytes]:
    if job.requests_blob:
        yield from deps.blobs.read(job.requests_blob)
        return
    for file_id in job.input_files:
        record = deps.files.get(job.workspace_id, file_id, int(deps.clock()))
        if record is None or not deps.blobs.exists(record.blob_key):
            raise BatchInputMissing(f"input file {file_id} no longer exists")
        yield from deps.blobs.read(record.blob_key)
        # a file without a final newline must not glue its last line to the next file's first
        yield b"\n"
