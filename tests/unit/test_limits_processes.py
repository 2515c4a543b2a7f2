"""Worker processes of one server share one store (a SQLite file, PostgreSQL, or Redis), and with it one rate-limit
budget."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from db_backends import BACKENDS
from mistral_gateway.storage.db import Database
from redis_server import redis_server

WORKER = """
import sys
from mistral_gateway.storage.limits import Bucket

url, rpm, attempts, now = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if url.startswith("redis://"):
    import redis
    from mistral_gateway.storage.limits_redis import RedisLimiter
    limiter = RedisLimiter(redis.Redis.from_url(url), prefix="procs:")
else:
    from mistral_gateway.storage.db import Database
    from mistral_gateway.storage.limits import DatabaseLimiter
    limiter = DatabaseLimiter(Database(url))
bucket = Bucket("token", "shared", requests_per_minute=rpm, concurrent_requests=rpm)
print("ready", flush=True)
sys.stdin.readline()  # every worker starts at once
admitted = 0
for i in range(attempts):
    lease = f"{sys.argv[5]}-{i}"
    if limiter.admit([bucket], lease, now) is None:
        admitted += 1
        limiter.settle([bucket], lease, 0, now)
print(admitted, flush=True)
"""


@pytest.fixture(params=[*BACKENDS, pytest.param("redis", marks=pytest.mark.e2e)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database on each backend, or a fresh redis-server on loopback."""
    server: Any
    if request.param == "redis":
        with redis_server() as server:
            yield server.url
    elif request.param == "sqlite":
        yield migrated(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        server = request.getfixturevalue("postgres_server")
        with server.database() as url:
            yield migrated(url)


def migrated(url: str) -> str:
    db = Database(url)
    db.migrate()
    db.dispose()
    return url


def test_processes_share_one_rpm_budget(store_url: str) -> None:
    url = store_url
    now, rpm, attempts = 1_700_000_010.0, 50, 40  # one fixed window: no minute boundary can split the run
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(rpm), str(attempts), str(now), f"w{n}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in range(3)]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        admitted = [int(worker.communicate(timeout=120)[0].strip()) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(w.returncode == 0 for w in workers)
    assert sum(admitted) == rpm  # 120 attempts against a budget of 50: exactly 50 admitted, across processes
    assert max(admitted) <= attempts
