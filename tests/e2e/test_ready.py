"""``GET /ready`` on a live server: 200 with every check's status while the database, blob store and Redis answer;
503 with ``Retry-After`` naming the failed check when the SQLite file cannot be opened, when PostgreSQL is not there,
when the S3 server (moto, on loopback) is stopped, or when redis-server is killed (200 again once it is back); no
secret in the answer or the log. ``/health`` stays 200."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mistral_gateway.services.container import build_services
from redis_server import redis_server
from s3_server import ACCESS_KEY, REGION, SECRET_KEY, s3_server
from support import LiveServer, fake_settings, free_port, serving, wait_until

pytestmark = pytest.mark.e2e


def ready(base_url: str) -> httpx.Response:
    return httpx.get(base_url + "/ready", timeout=30)


def assert_unavailable(r: httpx.Response, check: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5" and r.headers["x-request-id"]
    body = r.json()
    assert body["status"] == "unavailable" and body["failed"] == [check] and body["checks"][check] != "ok"


def test_ready_when_everything_answers(tmp_path: Path) -> None:
    with serving(fake_settings(tmp_path / "data")) as (live, _, _token):
        r = ready(live.base_url)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"database": "ok", "blobs": "ok"}}
        assert "retry-after" not in r.headers and r.headers["x-request-id"]


def test_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path / "data")
    with serving(settings) as (live, _, _token):
        db_file = settings.data_dir / "gateway.db"
        # The file moves away and a directory takes its name: open connections keep the old file (root reads a
        # chmod 000 file anyway), a new one cannot open the database, which is what the probe tries.
        db_file.rename(db_file.with_name("moved.db"))
        db_file.mkdir()
        assert_unavailable(ready(live.base_url), "database")
        assert httpx.get(live.base_url + "/health", timeout=30).status_code == 200  # liveness does no I/O


def test_postgresql_not_there(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    password = "pw-Sec4etValue-9f8e7d"
    url = f"postgresql+psycopg://gateway:{password}@127.0.0.1:{free_port()}/gateway"  # nothing listens there
    services = build_services(fake_settings(tmp_path / "data", database_url=url), migrate=False)
    live = LiveServer(services)
    live.start()
    try:
        r = ready(live.base_url)
    finally:
        live.stop()
        services.close()
    assert_unavailable(r, "database")
    assert r.json()["checks"]["blobs"] == "ok"
    assert password not in r.text and password not in caplog.text


def test_s3_server_stopped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with s3_server() as srv:
        bucket = srv.new_bucket()
        settings = fake_settings(tmp_path / "data", blob_store="s3", s3_endpoint_url=srv.endpoint_url,
                                 s3_bucket=bucket, s3_region=REGION, s3_access_key_id=ACCESS_KEY,
                                 s3_secret_access_key=SECRET_KEY, readiness_timeout_seconds=3)
        with serving(settings) as (live, _, _token):
            assert ready(live.base_url).json()["checks"] == {"database": "ok", "blobs": "ok"}
            srv.stop()
            r = ready(live.base_url)
    assert_unavailable(r, "blobs")
    assert r.json()["checks"]["database"] == "ok"
    assert SECRET_KEY not in r.text and SECRET_KEY not in caplog.text


def test_redis_check_follows_redis_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    password = "redis-Pw-7c6b5a4d3e"
    with redis_server(password=password) as redis:
        settings = fake_settings(tmp_path / "data", redis_url=redis.url, readiness_timeout_seconds=3)
        with serving(settings) as (live, _, _token):
            assert ready(live.base_url).json()["checks"] == {"database": "ok", "blobs": "ok", "redis": "ok"}
            redis.kill()
            r = ready(live.base_url)
            assert_unavailable(r, "redis")
            redis.start()  # same port: ready again once the breaker lets the next ping through
            again = wait_until(lambda: ready(live.base_url).status_code == 200)
    assert again and password not in r.text and password not in caplog.text
