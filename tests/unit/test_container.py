"""services.container: the object graph built from settings."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from clocks import PINNED
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.registry import Registry
from mistral_gateway.security.fetch import FetchPolicy
from mistral_gateway.services.container import build_services
from mistral_gateway.storage.tokens import TokenRepository


def test_build_services_creates_data_dir_db_and_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "data", bootstrap_dev_token=False)
    svc = build_services(settings)
    try:
        assert (tmp_path / "new" / "data" / "gateway.db").is_file()
        assert (tmp_path / "new" / "data" / "signing.key").is_file()
        assert (tmp_path / "new" / "data" / "tokens.epoch").is_file()
        assert svc.blobs.root == settings.blob_dir
        assert len(svc.registry.seed) == 55
        token, _ = svc.tokens.create("t")
        assert svc.tokens.verify(token).workspace == "default"
        assert svc.files.max_upload_bytes == settings.max_upload_bytes
        # one fetcher, built from the settings, which the chat images use too
        assert svc.fetcher is not None and svc.fetcher.policy == FetchPolicy.from_settings(settings)
        assert svc.chat._images.fetcher is svc.fetcher
    finally:
        svc.close()


def test_configured_secret_is_used_and_no_key_file_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, signing_secret="x" * 32, bootstrap_dev_token=False)
    svc = build_services(settings)
    try:
        assert not (tmp_path / "signing.key").exists()
    finally:
        svc.close()


def test_two_builds_share_the_generated_secret(tmp_path: Path) -> None:
    """Signed URLs made by one instance verify in another on the same data dir (e.g. after a restart)."""
    settings = Settings(data_dir=tmp_path, bootstrap_dev_token=False)
    a = build_services(settings)
    b = build_services(settings)
    try:
        assert a.files._signer.sign("f", "w", "1") == b.files._signer.sign("f", "w", "1")
    finally:
        a.close()
        b.close()


def test_models_and_limits_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bootstrap_dev_token=False, max_upload_bytes=123,
                        models=[ModelEntry(id="only-one", aliases=["alias-one"])])
    svc = build_services(settings, Registry.load())
    try:
        assert [c.id for c in svc.models.list("ws").data] == ["only-one", "alias-one"]
        assert svc.files.max_upload_bytes == 123
    finally:
        svc.close()


def test_without_migration_there_are_no_tables(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    svc = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False), migrate=False)
    try:
        assert inspect(svc.db.engine).get_table_names() == []
        svc.db.migrate()
        assert TokenRepository(svc.db).count() == 0
    finally:
        svc.close()


class _Worker:
    def __init__(self, events: list[str], name: str) -> None:
        self.events, self.name = events, name

    def start(self) -> None:
        self.events.append(f"start {self.name}")

    def stop(self) -> None:
        self.events.append(f"stop {self.name}")


class _LoopWorker(_Worker):
    """A component living on the serving event loop (as the job runner does)."""

    async def start(self) -> None:  # type: ignore[override]
        asyncio.get_running_loop()
        super().start()

    async def stop(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().stop()


def _threads() -> Counter[str]:
    """The container's background threads alive now, by name (other tests' may exist too: compare counts)."""
    return Counter(t.name for t in threading.enumerate() if t.is_alive() and t.name in OURS)


OURS = ("usage-writer", "lease-renewer")


@pytest.mark.parametrize("embedded", [True, False])
def test_background_components_share_one_lifecycle(tmp_path: Path, embedded: bool) -> None:
    svc = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False, run_embedded_worker=embedded))
    events: list[str] = []
    svc.add_background(_Worker(events, "a"))
    svc.add_background(_LoopWorker(events, "loop"))
    before = _threads()

    async def serve() -> None:
        async with svc.running():
            await svc.start()  # idempotent
            assert _threads() - before == Counter({"usage-writer": 1, "lease-renewer": 1})
            assert svc.job_runner.started is embedded  # the job workers run on this loop, with the rest
            svc.add_background(_Worker(events, "b"))  # joins a running container: started at once
            with pytest.raises(ValueError, match="before the services start"):
                svc.add_background(_LoopWorker(events, "late"))
            assert events == ["start a", "start loop", "start b"]
        assert not svc.job_runner.started and not svc.started

    try:
        svc.usage.record_row((1, "t", "w", "default", "list_files", None, "local", "native", 200, 1.0, 0, 0))
        assert events == [] and _threads() == before  # nothing starts on its own
        asyncio.run(serve())
        assert events == ["start a", "start loop", "start b", "stop b", "stop loop", "stop a"]  # reverse order
        assert _threads() == before
        assert svc.usage.pending() == 0  # the queued record was written when the writer stopped
    finally:
        svc.close()


def test_the_worker_lifecycle_runs_jobs_whatever_the_setting(tmp_path: Path) -> None:
    svc = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False, run_embedded_worker=False))
    order: list[str] = []
    svc.add_background(_LoopWorker(order, "x"))
    runner_stop = svc.job_runner.stop

    async def stop_runner() -> None:
        order.append("stop jobs")
        await runner_stop()

    svc.job_runner.stop = stop_runner  # type: ignore[method-assign]

    async def work() -> None:
        async with svc.running(jobs=True):
            assert svc.job_runner.started
        assert not svc.job_runner.started

    try:
        asyncio.run(work())
        assert order == ["start x", "stop jobs", "stop x"]  # job workers stop first, while usage and limits run
    finally:
        svc.close()


def test_a_component_that_fails_to_start_stops_what_started(tmp_path: Path) -> None:
    svc = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False, run_embedded_worker=False))
    events: list[str] = []

    class Broken(_Worker):
        def start(self) -> None:
            raise RuntimeError("no")

    svc.add_background(_Worker(events, "a"))
    svc.add_background(Broken(events, "broken"))
    before = _threads()

    async def work() -> None:
        async with svc.running():
            raise AssertionError("not reached")

    try:
        with pytest.raises(RuntimeError, match="no"):
            asyncio.run(work())
        assert events == ["start a", "stop broken", "stop a"] and not svc.started
        assert _threads() - before == Counter()
    finally:
        svc.close()


def test_the_rate_limiter_takes_its_clock_from_settings(tmp_path: Path) -> None:
    svc = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False,
                                  limits_clock="clocks:pinned_in_a_minute"))
    try:
        assert svc.limits._clock() == PINNED
    finally:
        svc.close()
    with pytest.raises(ValueError, match="limits_clock 'clocks:nowhere' is not a callable"):
        build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False, limits_clock="clocks:nowhere"))
    with pytest.raises(ValidationError, match="limits_clock"):
        Settings(data_dir=tmp_path, limits_clock="no colon")
