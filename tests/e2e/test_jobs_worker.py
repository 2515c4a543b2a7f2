"""Durable jobs for real: ``mistral-gateway worker`` processes killed with SIGKILL mid-job, and the API answering
while the server's embedded worker runs a CPU-heavy job."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from db_backends import app_database_url
from jobkinds import ended
from mistral_gateway.config import Settings, load_settings
from mistral_gateway.services.container import Services
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.jobs import JobRepository, JobStatus
from mistral_gateway.storage.tokens import TokenRepository
from support import CLI, LiveServer, clean_env, wait_until

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
wait_for = wait_until


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = clean_env()
    # The worker imports the test job kinds from tests/ (and the code under test from the caller's PYTHONPATH).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(TESTS)) if p)
    with log.open("ab") as out:
        # --workers 2 overrides the file's 1: both jobs must run at once to pause side by side
        return subprocess.Popen([*CLI, "worker", "--workers", "2", "--config", str(config)], env=env, stdout=out,
                                stderr=out)


def test_a_killed_worker_s_job_is_resumed_by_the_next_without_redoing_steps(tmp_path: Path, database_backend: str,
                                                                           request: pytest.FixtureRequest) -> None:
    with app_database_url(database_backend, request) as url:  # PostgreSQL: a killed worker leaves its session open
        run_killed_worker_case(tmp_path, f'database_url = "{url}"' if url else "")


def run_killed_worker_case(tmp_path: Path, database_line: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
{database_line}
data_dir = "{tmp_path / 'data'}"
bootstrap_dev_token = false
job_workers = 1
job_lease_seconds = 2.0
job_heartbeat_seconds = 0.2
job_poll_seconds = 0.1
[job_handlers]
steps = "jobkinds:steps"
""")
    settings = load_settings(config)
    db = Database(settings.sqlalchemy_url)
    db.migrate()
    repo = JobRepository(db)
    ws = TokenRepository(db).ensure_workspace("default", int(time.time())).id
    gate, log = tmp_path / "gate", tmp_path / "steps.log"

    def payload(name: str) -> dict[str, Any]:
        return {"steps": 5, "pause_after": 2, "log": str(log), "gate": str(gate), "paused": str(tmp_path / name)}

    resumable = repo.enqueue(ws, "steps", payload("paused-a"), now=time.time())
    one_shot = repo.enqueue(ws, "steps", payload("paused-b"), now=time.time() + 0.001, max_attempts=1)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        first = start_worker(config, tmp_path / "worker1.log")
        workers.append(first)
        wait_for(lambda: (tmp_path / "paused-a").exists() and (tmp_path / "paused-b").exists(), alive=first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        stuck = repo.get(ws, resumable.id)
        assert stuck is not None and stuck.status == JobStatus.RUNNING and stuck.checkpoint == {"done": 2}

        gate.write_text("open")
        second = start_worker(config, tmp_path / "worker2.log")
        workers.append(second)
        done = wait_for(ended(repo, ws, resumable.id), alive=second)
        failed = wait_for(ended(repo, ws, one_shot.id), alive=second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        db.dispose()

    assert (done.status, done.attempts, done.checkpoint, done.error) == (JobStatus.SUCCEEDED, 2, {"done": 5}, None)
    assert failed.status == JobStatus.FAILED and failed.error and "lease expired" in failed.error
    lines = log.read_text().splitlines()
    # Each step of the resumed job ran once: two by the killed worker, the rest by the next one.
    assert sorted(line for line in lines if line.startswith(resumable.id)) == sorted(
        [f"{resumable.id} step {i} attempt 1" for i in range(2)]
        + [f"{resumable.id} step {i} attempt 2" for i in range(2, 5)])
    assert sorted(line for line in lines if line.startswith(one_shot.id)) == [
        f"{one_shot.id} step {i} attempt 1" for i in range(2)]


@pytest.fixture
def settings(tmp_path: Path, app_database: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=app_database, bootstrap_dev_token=False,
                    job_handlers={"busy": "jobkinds:busy"}, job_poll_seconds=0.1, job_heartbeat_seconds=0.2)


@pytest.fixture
def server(services: Services) -> Iterator[LiveServer]:
    live = LiveServer(services)  # the app's lifespan starts the embedded worker (run_embedded_worker defaults on)
    live.start()
    yield live
    live.stop()


@pytest.mark.usefixtures("database_backend")
def test_the_api_answers_while_the_embedded_worker_runs_a_cpu_heavy_job(services: Services, server: LiveServer,
                                                                        tmp_path: Path) -> None:
    assert services.job_runner.started
    ws = TokenRepository(services.db).ensure_workspace("default", int(time.time())).id
    started, gate, log = tmp_path / "started", tmp_path / "gate", tmp_path / "busy.log"
    job = services.jobs.enqueue(ws, "busy", {"started": str(started), "gate": str(gate), "log": str(log)},
                                now=time.time())
    services.job_runner.notify()
    wait_for(started.exists)
    answers = 0
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for _ in range(40):
            if http.get("/health").status_code == 200:
                answers += 1
    running = services.jobs.get(ws, job.id)
    assert running is not None and running.status == JobStatus.RUNNING  # every answer came while it ran
    assert answers == 40
    gate.write_text("open")
    done = wait_for(ended(services.jobs, ws, job.id))
    assert done.status == JobStatus.SUCCEEDED
    assert int(log.read_text()) >= 1  # it did spin
