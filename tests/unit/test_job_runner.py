"""jobs.JobRunner on a real SQLite queue: outcomes, resume from checkpoints, cancellation, stop, lost leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import jobkinds
from jobkinds import ended
from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.jobs import HandlerRegistry, JobRunner, RunnerOptions
from mistral_gateway.services.container import build_services
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.jobs import JobRecord, JobRepository, JobStatus
from mistral_gateway.storage.tokens import TokenRepository

FAST = RunnerOptions(workers=2, lease_seconds=5.0, heartbeat_seconds=0.05, poll_seconds=0.05,
                     cancel_grace_seconds=0.2, stop_grace_seconds=0.1)
BOUND = 30.0  # seconds a wait may take before the test gives up (a hang, not a timing assertion)


@pytest.fixture
def repo(db: Database) -> JobRepository:
    return JobRepository(db)


@pytest.fixture
def ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("default", int(time.time())).id


def runner(repo: JobRepository, options: RunnerOptions = FAST, name: str = "r1") -> JobRunner:
    handlers = HandlerRegistry({k: f"jobkinds:{k}" for k in ("steps", "stubborn", "boom")})
    return JobRunner(repo, handlers, options, name=name)


async def until(check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + BOUND
    while not (value := check()):
        assert time.monotonic() < deadline, "condition never came true"
        await asyncio.sleep(0.02)
    return value


async def run_to_end(r: JobRunner, repo: JobRepository, ws: str, job_id: str) -> JobRecord:
    """Start ``r``, wait for the job to finish, stop ``r``."""
    await r.start()
    try:
        return await until(ended(repo, ws, job_id))
    finally:
        await r.stop()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def steps_payload(tmp_path: Path, steps: int = 4, **extra: Any) -> dict[str, Any]:
    return {"steps": steps, "log": str(tmp_path / "log"), "gate": str(tmp_path / "gate"),
            "paused": str(tmp_path / "paused"), **extra}


def logged_steps(tmp_path: Path) -> list[str]:
    return [line.split(" attempt")[0] for line in (tmp_path / "log").read_text().splitlines()]


def test_a_job_runs_to_success(repo: JobRepository, ws: str, tmp_path: Path) -> None:
    r = runner(repo)
    job = r.submit(ws, "steps", steps_payload(tmp_path))  # not started yet: the job waits in the queue
    assert job.status == JobStatus.QUEUED

    async def body() -> None:
        done = await run_to_end(r, repo, ws, job.id)
        assert (done.status, done.checkpoint, done.error, done.attempts) == (JobStatus.SUCCEEDED, {"done": 4}, None, 1)

    run(body)
    assert logged_steps(tmp_path) == [f"{job.id} step {i}" for i in range(4)]


def test_a_job_resumes_from_its_checkpoint(repo: JobRepository, ws: str, tmp_path: Path) -> None:
    job = repo.enqueue(ws, "steps", steps_payload(tmp_path, steps=5), now=time.time())
    # A worker that died long ago after checkpointing two steps: its lease has lapsed already.
    dead = repo.claim("dead", ["steps"], 1.0, time.time() - 1000)
    assert dead is not None and dead.lease_id is not None
    repo.save_checkpoint(dead.id, dead.lease_id, {"done": 2}, time.time() - 999)
    r = runner(repo)

    async def body() -> None:
        done = await run_to_end(r, repo, ws, job.id)
        assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 2)

    run(body)
    assert logged_steps(tmp_path) == [f"{job.id} step {i}" for i in range(2, 5)]


def test_cancel_reaches_a_running_job(repo: JobRepository, ws: str, tmp_path: Path) -> None:
    job = repo.enqueue(ws, "steps", steps_payload(tmp_path, pause_after=1), now=time.time())
    r = runner(repo)

    async def body() -> None:
        await r.start()
        try:
            await until((tmp_path / "paused").exists)
            repo.request_cancel(ws, job.id, time.time())
            done = await until(ended(repo, ws, job.id))
        finally:
            await r.stop()
        assert done.status == JobStatus.CANCELLED and done.checkpoint == {"done": 1}

    run(body)
    assert logged_steps(tmp_path) == [f"{job.id} step 0"]


def test_a_handler_ignoring_cancel_is_cut_off(repo: JobRepository, ws: str, tmp_path: Path) -> None:
    job = repo.enqueue(ws, "stubborn", {"started": str(tmp_path / "started")}, now=time.time())
    r = runner(repo)

    async def body() -> None:
        await r.start()
        try:
            await until((tmp_path / "started").exists)
            repo.request_cancel(ws, job.id, time.time())
            done = await until(ended(repo, ws, job.id))
            assert done.status == JobStatus.CANCELLED
            await until(lambda: not r.running())
        finally:
            await r.stop()

    run(body)


@pytest.mark.parametrize(("payload", "reason"), [({}, "ValueError: step 3 exploded"),
                                                 ({"clean": True}, "the input was unusable")])
def test_a_failing_handler_fails_the_job_with_its_reason(repo: JobRepository, ws: str, payload: dict[str, Any],
                                                         reason: str) -> None:
    job = repo.enqueue(ws, "boom", payload, now=time.time())
    r = runner(repo)

    async def body() -> None:
        done = await run_to_end(r, repo, ws, job.id)
        assert (done.status, done.error, done.attempts) == (JobStatus.FAILED, reason, 1)

    run(body)


def test_stop_hands_running_jobs_back_and_another_runner_resumes(repo: JobRepository, ws: str,
                                                                 tmp_path: Path) -> None:
    job = repo.enqueue(ws, "steps", steps_payload(tmp_path, steps=4, pause_after=2), now=time.time())
    first, second = runner(repo, name="first"), runner(repo, name="second")

    async def body() -> None:
        await first.start()
        try:
            await until((tmp_path / "paused").exists)
        finally:
            await first.stop()  # the handler is still waiting at its gate: cut off and handed back
        back = repo.get(ws, job.id)
        assert back is not None
        assert (back.status, back.checkpoint, back.attempts, back.worker_id) == (JobStatus.QUEUED, {"done": 2}, 0,
                                                                                 None)
        (tmp_path / "gate").write_text("open")
        done = await run_to_end(second, repo, ws, job.id)
        assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1)

    run(body)
    assert logged_steps(tmp_path) == [f"{job.id} step {i}" for i in range(4)]


def test_a_runner_that_lost_its_lease_stops_the_job_and_writes_nothing(repo: JobRepository, ws: str,
                                                                       tmp_path: Path) -> None:
    job = repo.enqueue(ws, "steps", steps_payload(tmp_path, steps=3, pause_after=1), now=time.time())
    r = runner(repo)

    async def body() -> None:
        await r.start()
        try:
            await until((tmp_path / "paused").exists)
            # As if this runner had stalled past its lease: the job is recovered and another worker owns it.
            repo.recover(time.time() + 3600)
            thief = repo.claim("thief", ["steps"], 3600, time.time())
            assert thief is not None and thief.id == job.id
            await until(lambda: not r.running())
        finally:
            await r.stop()
        now = repo.get(ws, job.id)
        assert now is not None and (now.status, now.worker_id, now.lease_id) == (JobStatus.RUNNING, "thief",
                                                                                  thief.lease_id)

    run(body)
    assert logged_steps(tmp_path) == [f"{job.id} step 0"]


def test_a_runner_claims_only_kinds_it_handles(repo: JobRepository, ws: str) -> None:
    job = repo.enqueue(ws, "unknown-kind", {}, now=time.time())
    r = runner(repo)
    assert "unknown-kind" not in r.handlers.kinds()
    assert r._claim() is None
    assert repo.get(ws, job.id).status == JobStatus.QUEUED  # type: ignore[union-attr]


def test_handler_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="must look like"):
        HandlerRegistry({"k": "no-colon"})
    with pytest.raises(ValueError, match="not a callable"):
        HandlerRegistry({"k": "jobkinds:__doc__"})
    registry = HandlerRegistry({"k": "jobkinds:steps"})
    with pytest.raises(ValueError, match="registered already"):
        registry.register("k", jobkinds.busy)
    assert registry.get("k") is jobkinds.steps



def test_settings_refuse_a_heartbeat_too_slow_for_its_lease(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most half of job_lease_seconds"):
        Settings(data_dir=tmp_path, job_lease_seconds=3, job_heartbeat_seconds=2)
    options = RunnerOptions.from_settings(Settings(data_dir=tmp_path, job_workers=5, job_lease_seconds=60))
    assert (options.workers, options.lease_seconds, options.heartbeat_seconds) == (5, 60, 2)
    services = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False, job_max_attempts=7))
    try:
        assert services.jobs.max_attempts == 7
    finally:
        services.close()


@pytest.mark.parametrize("embedded", [True, False])
def test_the_server_runs_the_embedded_worker_unless_told_not_to(tmp_path: Path, embedded: bool) -> None:
    services = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False, run_embedded_worker=embedded))
    try:
        with TestClient(create_app(services=services)) as client:
            assert client.get("/health").status_code == 200
            assert services.job_runner.started is embedded
        assert not services.job_runner.started  # the lifespan's end stopped it
    finally:
        services.close()


def test_two_runners_on_one_queue_run_every_job_once(database_url: str, tmp_path: Path) -> None:
    """Two runners with their own engines (as two processes would have) drain one queue."""
    dbs = [Database(database_url) for _ in range(2)]
    dbs[0].migrate()
    try:
        repos = [JobRepository(d) for d in dbs]
        ws = TokenRepository(dbs[0]).ensure_workspace("default", int(time.time())).id
        jobs = [repos[0].enqueue(ws, "steps", steps_payload(tmp_path, steps=2), now=time.time()) for _ in range(12)]
        runners = [runner(repo, name=f"r{i}") for i, repo in enumerate(repos)]

        async def body() -> None:
            for r in runners:
                await r.start()
            try:
                for job in jobs:
                    done = await until(ended(repos[0], ws, job.id))
                    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1)
            finally:
                for r in runners:
                    await r.stop()

        run(body)
    finally:
        for d in dbs:
            d.dispose()
    lines = logged_steps(tmp_path)
    assert sorted(lines) == sorted(f"{job.id} step {i}" for job in jobs for i in range(2))  # each once
