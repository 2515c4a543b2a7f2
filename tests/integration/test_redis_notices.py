"""Change notices over a real redis-server: a token revoked on one replica is refused on another at once (not after
``token_cache_seconds``), a fine-tuned model change drops the other replica's cache, a job submitted in one process
wakes a ``mistral-gateway worker`` whose poll interval is long, and a lost subscription moves the epochs once."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from jobkinds import ended
from mistral_gateway.config import Settings, load_settings
from mistral_gateway.errors import Unauthorized
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.storage.jobs import JobStatus
from mistral_gateway.storage.redis_bus import SharedEpoch
from redis_server import RedisServer, redis_server
from support import CLI, clean_env, stop_process, wait_until

pytestmark = pytest.mark.e2e  # starts redis-server (and a worker process)

TESTS = Path(__file__).resolve().parents[1]
BOUND = 30.0  # seconds any wait may take before the test calls it a hang (not a timing assertion)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def replica(tmp_path: Path, name: str, database_url: str, redis: RedisServer) -> Services:
    """A replica: its own data dir (so no shared epoch file), the shared database and Redis, a long token TTL."""
    return build_services(Settings(data_dir=tmp_path / name, database_url=database_url, redis_url=redis.url,
                                   bootstrap_dev_token=False, token_cache_seconds=3600, models_cache_seconds=3600))


async def subscribed(*replicas: Services) -> None:
    for services in replicas:
        assert services.redis is not None
        while not services.redis.bus.connected.is_set():
            await anyio.sleep(0.02)


def test_a_revocation_on_one_replica_is_refused_on_another_at_once(tmp_path: Path, database_url: str,
                                                                    redis: RedisServer) -> None:
    first = replica(tmp_path, "one", database_url, redis)
    second = replica(tmp_path, "two", database_url, redis)

    async def scenario() -> None:
        async with first.running(jobs=False), second.running(jobs=False):
            with anyio.fail_after(BOUND):
                await subscribed(first, second)
            token, record = first.tokens.create("shared")
            assert second.tokens.verify_cached(token) is None  # as a request does: the cache first, then verify
            assert second.tokens.verify(token).token_id == record.id
            assert second.tokens.verify_cached(token) is not None  # cached for an hour
            first.tokens.revoke(record.id)
            with anyio.fail_after(BOUND):
                while second.tokens.verify_cached(token) is not None:  # the notice drops the cache
                    await anyio.sleep(0.02)
            with pytest.raises(Unauthorized, match="revoked"):
                second.tokens.verify(token)
            models_before = second.fine_tuned.epoch.current()
            first.fine_tuned.epoch.bump()  # what every fine-tuned model write does
            with anyio.fail_after(BOUND):
                while second.fine_tuned.epoch.current() == models_before:
                    await anyio.sleep(0.02)

    try:
        anyio.run(scenario)
    finally:
        first.close()
        second.close()


def test_a_lost_subscription_moves_the_epochs_once(tmp_path: Path, redis: RedisServer) -> None:
    services = replica(tmp_path, "one", f"sqlite:///{tmp_path / 'shared.db'}", redis)
    epoch = services.fine_tuned.epoch
    assert isinstance(epoch, SharedEpoch)
    assert services.redis is not None
    bus = services.redis.bus

    async def scenario() -> None:
        async with services.running(jobs=False):
            with anyio.fail_after(BOUND):
                await subscribed(services)
            before = epoch.current()
            redis.kill()
            with anyio.fail_after(BOUND):
                while bus.connected.is_set():
                    await anyio.sleep(0.02)
            assert epoch.current() == before  # nothing moves while Redis is away
            redis.start()
            with anyio.fail_after(BOUND):
                await subscribed(services)
            moved = epoch.current()
            assert moved != before
            await anyio.sleep(0.3)
            assert epoch.current() == moved  # once, not per retry

    try:
        anyio.run(scenario)
    finally:
        services.close()


def test_a_submitted_job_wakes_a_worker_in_another_process(tmp_path: Path, redis: RedisServer) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
data_dir = "{tmp_path / 'data'}"
bootstrap_dev_token = false
redis_url = "{redis.url}"
job_workers = 1
job_poll_seconds = 60.0
[job_handlers]
steps = "jobkinds:steps"
""")
    submitter = build_services(load_settings(config))
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(TESTS)) if p)
    worker = subprocess.Popen([*CLI, "worker", "--config", str(config)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    watcher = redis.client()
    try:
        channel = "mistral-gateway:notices"
        wait_until(lambda: watcher.pubsub_numsub(channel)[0][1] >= 1, alive=worker, bound=BOUND)  # the worker listens
        time.sleep(0.5)  # past the claim its subscription triggers: only a notice wakes it before a minute
        ws = submitter.tokens.create("t")[1].workspace_id
        job = submitter.job_runner.submit(ws, "steps", {"steps": 1, "log": str(tmp_path / "steps.log")})
        done = wait_until(ended(submitter.jobs, ws, job.id), alive=worker, bound=BOUND)
        assert done.status == JobStatus.SUCCEEDED
    finally:
        watcher.close()
        stop_process(worker, grace=30)
        submitter.close()
