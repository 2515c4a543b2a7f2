"""services.metrics.Metrics: what one request, job and scrape record; the multi-process mode summed across processes;
the job runner reporting its jobs' durations and the upstream client its failures (on loopback)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mistral_gateway.config import UpstreamEntry
from mistral_gateway.errors import BadGateway
from mistral_gateway.jobs import HandlerRegistry, JobRunner, RunnerOptions
from mistral_gateway.services.metrics import Metrics
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.jobs import JobRepository, JobStatus
from mistral_gateway.storage.tokens import TokenRepository
from mistral_gateway.upstreams.client import Unreachable, UpstreamClient
from support import free_port

FAST = RunnerOptions(workers=1, lease_seconds=5.0, heartbeat_seconds=0.05, poll_seconds=0.05,
                     cancel_grace_seconds=0.2, stop_grace_seconds=0.1)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_request_counts_its_status_latency_and_tokens() -> None:
    m = Metrics()
    m.request("chat_completion", "native", 200, 0.02, model="fake-chat", prompt_tokens=7, completion_tokens=3)
    m.request("chat_completion", "native", 200, 0.3, model="fake-chat", prompt_tokens=5, completion_tokens=2)
    m.request("chat_completion", "lowcode", 429, 0.001)
    assert value(m, "mistral_gateway_requests_total", operation="chat_completion", dialect="native",
                 status="200") == 2
    assert value(m, "mistral_gateway_requests_total", operation="chat_completion", dialect="lowcode",
                 status="429") == 1
    assert value(m, "mistral_gateway_request_duration_seconds_count", operation="chat_completion") == 3
    assert value(m, "mistral_gateway_request_duration_seconds_bucket", operation="chat_completion", le="0.025") == 2
    assert value(m, "mistral_gateway_tokens_total", operation="chat_completion", model="fake-chat",
                 kind="prompt") == 12
    assert value(m, "mistral_gateway_tokens_total", operation="chat_completion", model="fake-chat",
                 kind="completion") == 5


def test_upstream_failures_by_upstream_and_reason() -> None:
    m = Metrics()
    m.upstream_failure("mistral", "status")
    m.upstream_failure("mistral", "status")
    m.upstream_failure("vllm", "timeout")
    assert value(m, "mistral_gateway_upstream_errors_total", upstream="mistral", reason="status") == 2
    assert value(m, "mistral_gateway_upstream_errors_total", upstream="vllm", reason="timeout") == 1


def test_the_upstream_client_reports_each_failed_exchange() -> None:
    """On loopback: a 5xx answer, a refused connection and a body cut off count; a 200 and a 404 do not."""
    m = Metrics()

    async def down(_: web.Request) -> web.Response:
        return web.json_response({"message": "down"}, status=503)

    async def missing(_: web.Request) -> web.Response:
        return web.json_response({"message": "no"}, status=404)

    async def fine(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        assert request.transport is not None
        request.transport.abort()  # the connection drops mid-stream
        return response

    async def body() -> None:
        app = web.Application()
        app.add_routes([web.get("/v1/down", down), web.get("/v1/missing", missing), web.get("/v1/fine", fine),
                        web.get("/v1/cut", cut)])
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = UpstreamClient(UpstreamEntry(name="u", kind="mistral-gateway", base_url=f"http://127.0.0.1:{port}",
                                              allow_private_network=True), on_failure=m.upstream_failure)
        refused = UpstreamClient(UpstreamEntry(name="gone", kind="mistral-gateway", allow_private_network=True,
                                               base_url=f"http://127.0.0.1:{free_port()}"),
                                 on_failure=m.upstream_failure)
        try:
            for path in ("/v1/down", "/v1/missing", "/v1/fine"):
                await (await client.open("GET", path)).read()
            with pytest.raises(BadGateway):
                async for _ in (await client.open("GET", "/v1/cut")).chunks():
                    pass
            with pytest.raises(Unreachable):
                await refused.open("GET", "/v1/fine")
        finally:
            await client.aclose()
            await refused.aclose()
            await runner.cleanup()

    asyncio.run(body())
    got = {key: v for key, v in samples(m.render()).items() if key[0] == "mistral_gateway_upstream_errors_total"}
    assert got == {("mistral_gateway_upstream_errors_total", (("reason", "status"), ("upstream", "u"))): 1,
                   ("mistral_gateway_upstream_errors_total", (("reason", "broken"), ("upstream", "u"))): 1,
                   ("mistral_gateway_upstream_errors_total", (("reason", "unreachable"), ("upstream", "gone"))): 1}


def test_two_instances_count_apart() -> None:
    a, b = Metrics(), Metrics()
    a.request("list_models", "native", 200, 0.001)
    assert value(b, "mistral_gateway_requests_total", operation="list_models", dialect="native", status="200") is None


def test_queue_depth_is_read_at_scrape_time() -> None:
    depth = {"batch": 3}
    m = Metrics(queue_depth=lambda: depth)
    assert samples(m.render())[("mistral_gateway_job_queue_depth", (("kind", "batch"),))] == 3
    depth.update(batch=1, fine_tuning=2)
    got = samples(m.render())
    assert got[("mistral_gateway_job_queue_depth", (("kind", "batch"),))] == 1
    assert got[("mistral_gateway_job_queue_depth", (("kind", "fine_tuning"),))] == 2


def test_job_durations_by_kind_and_outcome() -> None:
    m = Metrics()
    m.job("batch", "succeeded", 4.0)
    m.job("batch", "failed", 0.2)
    assert value(m, "mistral_gateway_job_duration_seconds_count", kind="batch", outcome="succeeded") == 1
    assert value(m, "mistral_gateway_job_duration_seconds_sum", kind="batch", outcome="failed") == 0.2


_RECORD = """
import sys
from mistral_gateway.services.metrics import Metrics
m = Metrics()
for _ in range(int(sys.argv[1])):
    m.request("list_models", "native", 200, 0.001, model="m", prompt_tokens=2)
"""
_RENDER = "import sys; from mistral_gateway.services.metrics import Metrics; sys.stdout.write(Metrics().render()" \
          ".decode())"


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    """Worker processes sharing PROMETHEUS_MULTIPROC_DIR: a scrape in any process sees the sum of all of them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", _RECORD, str(count)], env=env, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", _RENDER], env=env, check=True, timeout=60, capture_output=True).stdout
    got = samples(out)
    key = (("dialect", "native"), ("operation", "list_models"), ("status", "200"))
    assert got[("mistral_gateway_requests_total", key)] == 7
    assert got[("mistral_gateway_request_duration_seconds_count", (("operation", "list_models"),))] == 7
    assert got[("mistral_gateway_tokens_total", (("kind", "prompt"), ("model", "m"),
                                                 ("operation", "list_models")))] == 14


def test_the_runner_reports_each_jobs_duration(db: Database, tmp_path: Path) -> None:
    repo = JobRepository(db)
    ws = TokenRepository(db).ensure_workspace("default", int(time.time())).id
    m = Metrics(queue_depth=repo.queued_by_kind)
    r = JobRunner(repo, HandlerRegistry({"steps": "jobkinds:steps"}), FAST, name="r1", observe=m.job)
    payload = {"steps": 2, "log": str(tmp_path / "log"), "gate": str(tmp_path / "gate"),
               "paused": str(tmp_path / "paused")}
    job = r.submit(ws, "steps", payload)
    assert samples(m.render())[("mistral_gateway_job_queue_depth", (("kind", "steps"),))] == 1

    async def body() -> None:
        await r.start()
        try:
            deadline = time.monotonic() + 30
            while repo.get(ws, job.id).status != JobStatus.SUCCEEDED:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the job never ended"
                await asyncio.sleep(0.02)
        finally:
            await r.stop()

    asyncio.run(body())
    assert value(m, "mistral_gateway_job_duration_seconds_count", kind="steps", outcome="succeeded") == 1
    assert ("mistral_gateway_job_queue_depth", (("kind", "steps"),)) not in samples(m.render())


def test_a_failing_queue_read_leaves_the_rest_of_the_scrape() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("database down")

    m = Metrics(queue_depth=broken)  # registering must not read it either
    m.request("list_models", "native", 200, 0.001)
    got = samples(m.render())
    assert got[("mistral_gateway_requests_total", (("dialect", "native"), ("operation", "list_models"),
                                                   ("status", "200")))] == 1
    assert not [key for key in got if key[0] == "mistral_gateway_job_queue_depth"]
