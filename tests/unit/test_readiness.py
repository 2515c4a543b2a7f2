"""services.readiness: checks run together, each bounded by the timeout; a failure is named by its exception type
only; components register their own checks (a Redis client adds ``redis``)."""

from __future__ import annotations

import threading

import anyio
import pytest

from mistral_gateway.services.readiness import Readiness


def test_results_by_name_in_registration_order(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    readiness = Readiness(timeout=0.2)
    readiness.add("database", lambda timeout: None)
    readiness.add("blobs", lambda timeout: release.wait(30))  # hangs past the timeout

    def refused(timeout: float) -> None:
        raise ConnectionRefusedError("redis://:hunter2-secret@10.0.0.5:6379 refused")  # a message with a secret

    readiness.add("redis", refused)
    try:
        results = anyio.run(readiness.run)
    finally:
        release.set()
    assert results == {"database": "ok", "blobs": "timeout", "redis": "ConnectionRefusedError"}
    assert list(results) == readiness.names == ["database", "blobs", "redis"]
    assert "hunter2" not in caplog.text and "readiness check redis failed" in caplog.text


def test_a_check_is_called_with_the_timeout_and_can_be_replaced() -> None:
    seen: list[float] = []
    readiness = Readiness(timeout=1.5)
    readiness.add("redis", lambda timeout: seen.append(-1))
    readiness.add("redis", seen.append)
    assert anyio.run(readiness.run) == {"redis": "ok"} and seen == [1.5]


def test_services_check_the_database_and_the_blob_store(services) -> None:  # type: ignore[no-untyped-def]
    assert services.readiness.names == ["database", "blobs"]
    assert services.readiness.timeout == services.settings.readiness_timeout_seconds
    assert anyio.run(services.readiness.run) == {"database": "ok", "blobs": "ok"}
