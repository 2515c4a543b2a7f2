"""The batch executor against fakes (a fake JobContext, a fake execute callable) on real SQLite and blob storage:
malformed lines, the concurrency bound, checkpoints and resume, cancel mid-run, timeout, a vanished input file."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

import orjson
import pytest

from batch_support import FakeJob
from mistral_gateway.protocol.batch import BatchJobIn
from mistral_gateway.services.batch import BatchService
from mistral_gateway.services.batch_lines import split_lines
from mistral_gateway.services.container import Services

# checkpoints, compare-and-set status updates and result files' rows: on SQLite and PostgreSQL
pytestmark = pytest.mark.usefixtures("database_backend")

LINE_ID = re.compile(r"^batch-[0-9a-f]{8}-(\d+)-[0-9a-f-]{36}$")


class Crash(Exception):
    """The process dying right after a checkpoint."""


@pytest.fixture
def batch(services: Services, clock: Any) -> BatchService:
    assert services.batch is not None
    services.batch.deps.checkpoint_every = 2
    services.batch.deps.poll_seconds = 0.01
    services.batch.deps.clock = clock
    return services.batch


def use(batch: BatchService, execute: Any, concurrency: int = 3) -> None:
    batch.deps.execute_for = lambda job: execute
    batch.deps.concurrency_for = lambda job: concurrency


async def echo(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if body.get("fail"):
        return 400, {"object": "error", "message": "told to fail", "type": "invalid_request_error", "param": None,
                     "code": "TOLD"}
    return 200, {"object": "chat.completion", "echo": body["n"]}


def create(batch: BatchService, services: Services, count: int, **extra: Any) -> tuple[str, str]:
    token, _ = services.tokens.create("t")
    workspace = services.tokens.verify(token).workspace_id
    request = BatchJobIn(endpoint="/v1/chat/completions", model="ministral-3b-latest",
                         requests=[{"custom_id": f"c{i}", "body": {"n": i, **extra}} for i in range(count)])
    job = asyncio.run(batch.create(workspace, None, request))
    return workspace, job.id


def read(services: Services, workspace: str, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    download = services.files.download(workspace, file_id)
    return [orjson.loads(line) for line in b"".join(download.chunks).splitlines()]


def test_results_failures_and_line_format(batch: BatchService, services: Services) -> None:
    use(batch, echo)
    workspace, job_id = create(batch, services, 4)
    services.batch.deps.repo.update(job_id, requests_blob=_with_bad_lines(services, batch, job_id))
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace)))
    job = batch.get(workspace, job_id)
    assert job.status == "SUCCESS" and (job.succeeded_requests, job.failed_requests) == (4, 3)
    out = read(services, workspace, job.output_file)
    assert sorted(o["custom_id"] for o in out) == ["c0", "c1", "c2", "c3"]
    for line in out:
        assert LINE_ID.match(line["id"]) and line["id"][6:14] == job_id.replace("-", "")[:8]
        assert line["response"] == {"status_code": 200, "body": {"object": "chat.completion",
                                                                  "echo": int(line["custom_id"][1:])}}
        assert line["error"] is None
    errors = read(services, workspace, job.error_file)
    assert [e["error"]["code"] for e in errors] == ["INVALID_BATCH_LINE", "TOLD", "INVALID_BATCH_LINE"]
    assert errors[1]["response"]["status_code"] == 400 and errors[1]["custom_id"] == "failing"
    assert {e.message for e in job.errors} >= {"told to fail"}
    assert len(job.outputs or []) == 7  # an inline job carries its results


def _with_bad_lines(services: Services, batch: BatchService, job_id: str) -> str:
    """The job's stored requests with a malformed line, a failing request and a body-less line appended."""
    record = batch.deps.repo.get(job_id)
    assert record is not None and record.requests_blob
    writer = services.blobs.writer()
    for chunk in services.blobs.read(record.requests_blob):
        writer.write(chunk)
    writer.write(b'{"custom_id": "broken", "body": \n\n')  # the blank line is no request
    writer.write(b'{"custom_id": "failing", "body": {"n": 9, "fail": true}}\n{"custom_id": "x"}')
    return writer.commit().key


def test_concurrency_is_bounded_and_used(batch: BatchService, services: Services) -> None:
    bound = 3
    in_flight, peak = 0, 0
    gate = asyncio.Event()

    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == bound:
            gate.set()  # as many in flight as allowed: let them all go
        await gate.wait()
        in_flight -= 1
        return 200, {"n": body["n"]}

    use(batch, execute, bound)
    batch.deps.checkpoint_every = 50
    workspace, job_id = create(batch, services, 12)
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace)))
    assert peak == bound
    assert batch.get(workspace, job_id).succeeded_requests == 12


def test_resume_from_checkpoint_redoes_nothing(batch: BatchService, services: Services) -> None:
    calls: list[int] = []

    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        calls.append(body["n"])
        return 200, {"n": body["n"]}

    use(batch, execute)
    workspace, job_id = create(batch, services, 9)
    first = FakeJob({"batch_id": job_id}, workspace)

    def dies_on_second(data: dict[str, Any]) -> None:
        first.saved.append(data)
        if len(first.saved) == 2:
            raise Crash

    first.checkpoint = dies_on_second  # type: ignore[method-assign]
    with pytest.raises(Crash):
        asyncio.run(batch.handler(first))
    assert sorted(calls) == [0, 1, 2, 3] and batch.get(workspace, job_id).status == "RUNNING"
    # died right after saving its second checkpoint: the counters show the first (they are published after the
    # checkpoint, so they never run ahead of what a resumed run skips)
    assert batch.get(workspace, job_id).completed_requests == 2
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace, checkpoint_data=first.saved[-1])))
    assert sorted(calls) == list(range(9))  # each line executed exactly once across the two runs
    job = batch.get(workspace, job_id)
    assert job.status == "SUCCESS" and job.succeeded_requests == job.total_requests == 9
    assert sorted(o["response"]["body"]["n"] for o in read(services, workspace, job.output_file)) == list(range(9))
    assert not any(services.blobs.exists(k) for part in first.saved[-1]["parts"] for k in part if k)


@pytest.mark.parametrize("via", ["api", "runner"])
def test_cancel_mid_run(batch: BatchService, services: Services, via: str) -> None:
    started = asyncio.Event()
    ctx: FakeJob | None = None

    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body["n"] < 4:
            return 200, {"n": body["n"]}
        if not started.is_set():
            started.set()
            if via == "api":
                assert batch.cancel(workspace, job_id).status == "CANCELLATION_REQUESTED"
            else:
                assert ctx is not None
                ctx.cancel = True
        await asyncio.Event().wait()  # never answers: only the cancellation ends it
        raise AssertionError("unreachable")

    use(batch, execute)
    workspace, job_id = create(batch, services, 10)
    ctx = FakeJob({"batch_id": job_id}, workspace)
    asyncio.run(batch.handler(ctx))
    job = batch.get(workspace, job_id)
    assert job.status == "CANCELLED" and job.completed_at is not None
    assert job.succeeded_requests == 4 and job.total_requests == 10
    assert sorted(o["custom_id"] for o in read(services, workspace, job.output_file)) == ["c0", "c1", "c2", "c3"]


def test_timeout_exceeded(batch: BatchService, services: Services, clock: Any) -> None:
    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body["n"] == 1:
            clock.advance(25 * 3600)  # past the 24-hour default
        return 200, {}

    use(batch, execute)
    workspace, job_id = create(batch, services, 6)
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace)))
    job = batch.get(workspace, job_id)
    assert job.status == "TIMEOUT_EXCEEDED" and job.succeeded_requests == 2


def test_vanished_input_file_fails_the_job(batch: BatchService, services: Services) -> None:
    use(batch, echo)
    workspace, job_id = create(batch, services, 2)
    batch.deps.repo.update(job_id, requests_blob=None, input_files=["3fa85f64-5717-4562-b3fc-2c963f66afa6"])
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace)))
    job = batch.get(workspace, job_id)
    assert job.status == "FAILED" and "no longer exists" in job.errors[0].message


def test_terminal_jobs_are_not_rerun(batch: BatchService, services: Services) -> None:
    calls = []

    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        calls.append(body)
        return 200, {}

    use(batch, execute)
    workspace, job_id = create(batch, services, 2)
    assert batch.cancel(workspace, job_id).status == "CANCELLED"
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace)))
    assert calls == [] and batch.get(workspace, job_id).status == "CANCELLED"


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"ab\ncd", b"e\n", b"f"], [b"ab", b"cde", b"f"]),
    ([b"0123456789", b"x\nok\n"], [None, b"ok"]),
    ([b"\n\n"], [b"", b""]),
    ([b"abcdefgh"], [b"abcdefgh"]),
    ([b"abcdefghi"], [None]),
])
def test_split_lines_bounds_each_line(chunks: list[bytes], expected: list[bytes | None]) -> None:
    assert list(split_lines(chunks, 8)) == expected


def test_record_fields_roundtrip(batch: BatchService, services: Services) -> None:
    workspace, job_id = create(batch, services, 1)
    record = batch.deps.repo.get(job_id, workspace)
    assert record is not None and dataclasses.asdict(record)["metadata"] is None
    assert batch.deps.repo.get(job_id, "another-workspace") is None


def test_a_cancel_that_wins_the_race_against_the_start_runs_nothing(batch: BatchService, services: Services,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        calls.append(body)
        return 200, {}

    use(batch, execute)
    workspace, job_id = create(batch, services, 3)
    stale = batch.deps.repo.get(job_id)  # what the runner read while the job was still QUEUED
    assert batch.cancel(workspace, job_id).status == "CANCELLED"
    monkeypatch.setattr(batch.deps.repo, "get", lambda *args: stale)
    asyncio.run(batch.handler(FakeJob({"batch_id": job_id}, workspace)))
    monkeypatch.undo()
    assert calls == [] and batch.get(workspace, job_id).status == "CANCELLED"
