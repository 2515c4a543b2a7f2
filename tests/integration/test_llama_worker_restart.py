"""The llama.cpp worker process of a model (SmolLM2-135M, real weights) dies and comes back: SIGKILL during and
between requests (engine and HTTP level), workers that cannot start, reaping on close and when the server process
itself is SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.assets import resolve_asset
from mistral_gateway.engines.base import EngineError, EngineUnavailable, SamplingParams
from mistral_gateway.engines.llama import LlamaEngine
from mistral_gateway.services.container import Services, build_services
from support import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # real weights, llama worker processes

ASSET = "smollm2-135m-instruct-q4_1"
LONG = SamplingParams(max_tokens=900, min_tokens=900, temperature=0)  # EOS masked: ~10 s of decoding
SHORT = SamplingParams(max_tokens=8, temperature=0)


@pytest.fixture(scope="module")
def smol(weights_dir: Path) -> Path:
    return resolve_asset(ASSET, weights_dir)


def make_engine(path: Path, model_id: str = "smol-restart", clock: Callable[[], float] = time.monotonic) -> LlamaEngine:
    entry = ModelEntry(id=model_id, asset=ASSET, max_context_length=1024, parallel=2)
    return LlamaEngine(entry, path, threads=2, queue_limit=2, clock=clock)


@pytest.fixture
def engine(smol: Path) -> Iterator[LlamaEngine]:
    eng = make_engine(smol)
    yield eng
    eng.close()


def gone(pid: int) -> bool:
    """Exited: reaped, or a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)


# -- engine level -----------------------------------------------------------------------------------------------


def test_killed_idle_worker_is_replaced_on_the_next_request(engine: LlamaEngine,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    first = asyncio.run(engine.complete("The capital of France is", SHORT))
    old = engine.server.pid
    kill(old)
    with caplog.at_level(logging.WARNING, logger="mistral_gateway.engines"):
        again = asyncio.run(engine.complete("The capital of France is", SHORT))
    assert again.text == first.text and again.completion_tokens == 8
    assert engine.server.pid != old and engine.server.alive()
    assert any(f"pid {old}" in r.getMessage() and "-9" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_kill_during_a_stream_ends_it_with_engine_unavailable(engine: LlamaEngine) -> None:
    old = engine.server.pid

    async def consume() -> int:
        received = 0
        async for delta in engine.stream("Once upon a time", LONG):
            assert delta.finish_reason is None  # never a (fake) normal end
            received += 1
            if received == 3:
                os.kill(old, signal.SIGKILL)
        return received

    with pytest.raises(EngineUnavailable) as info:
        asyncio.run(consume())
    assert "smol-restart" in str(info.value) and "SIGKILL" in str(info.value) and info.value.retry_after > 0
    assert wait_gone(old)
    generation = asyncio.run(engine.complete("Hello", SHORT))  # the next one runs on a new worker
    assert generation.completion_tokens == 8 and engine.server.pid != old


def test_concurrent_requests_after_a_crash_start_one_worker(engine: LlamaEngine) -> None:
    kill(engine.server.pid)

    async def both() -> list[int]:
        results = await asyncio.gather(*(engine.complete(f"Count to {i}:", SHORT) for i in range(4)))
        return [g.completion_tokens for g in results]

    assert asyncio.run(both()) == [8, 8, 8, 8]
    assert engine._servers.starts == 2  # the first load and exactly one restart


def test_a_worker_that_keeps_failing_to_start_is_given_up(smol: Path, tmp_path: Path, clock: Any) -> None:
    model = tmp_path / "model.gguf"
    model.symlink_to(smol)
    engine = make_engine(model, "flaky", clock=clock)  # the failed-starts window (a minute) moves with ``clock``
    try:
        kill(engine.server.pid)
        model.unlink()
        model.write_bytes(b"GGUF" + os.urandom(2048))  # corrupted weights: every start fails
        started = time.monotonic()
        with pytest.raises(EngineError) as info:
            asyncio.run(engine.complete("Hello", SHORT))
        message = str(info.value)
        assert not isinstance(info.value, EngineUnavailable)
        assert "'flaky'" in message and "failed to start 3 times" in message
        assert "llama_worker: cannot load" in message and str(model) in message  # the worker's stderr tail
        assert engine._servers.starts == 4 and time.monotonic() - started < 15
        with pytest.raises(EngineError, match="failed to start 3 times"):  # no new attempt within the window
            asyncio.run(engine.complete("Hello", SHORT))
        assert engine._servers.starts == 4
        model.unlink()
        model.symlink_to(smol)  # fixed: once the window has passed the next request starts it again
        clock.advance(61)
        assert asyncio.run(engine.complete("Hello", SHORT)).completion_tokens == 8
        assert engine._servers.starts == 5 and engine.server.alive()
    finally:
        engine.close()


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00" + b"\x00" * 64, b"not a model at all"])
def test_corrupted_weights_fail_the_load_clearly(tmp_path: Path, content: bytes) -> None:
    model = tmp_path / "broken.gguf"
    model.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(EngineError) as info:
        make_engine(model, "broken")
    message = str(info.value)
    assert "'broken'" in message and "exited with code 1 before it was ready" in message
    assert f"cannot load {model}" in message
    assert time.monotonic() - started < 20


def test_close_reaps_the_worker(smol: Path) -> None:
    engine = make_engine(smol)
    worker = engine.server
    engine.close()
    assert worker.returncode == 0  # it exited by itself when its stdin closed
    assert not Path(f"/proc/{worker.pid}").exists()  # and was reaped: no zombie left


PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mistral_gateway.config import ModelEntry
    from mistral_gateway.engines.llama import LlamaEngine

    entry = ModelEntry(id="orphan", max_context_length=512, parallel=1)
    engine = LlamaEngine(entry, Path(sys.argv[1]), threads=1, queue_limit=1)
    print(engine.server.pid, flush=True)
    time.sleep(600)
""")


def test_worker_exits_when_the_server_process_is_sigkilled(smol: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(smol)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert not gone(worker)
        parent.kill()
        parent.wait(timeout=10)
        assert wait_gone(worker, 5.0), f"worker {worker} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# -- over HTTP ----------------------------------------------------------------------------------------------------

SMALL = "ministral-3b-latest"  # alias of SmolLM2-135M-Instruct


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[LiveServer, Services, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("restart"), weights_path=weights_dir,
                        bootstrap_dev_token=False)
    services = build_services(settings)
    token, _ = services.tokens.create("restart")
    server = LiveServer(services)
    server.start()
    yield server, services, token
    server.stop()
    services.close()


@pytest.fixture
def http(stack: tuple[LiveServer, Services, str]) -> Iterator[httpx.Client]:
    server, _, token = stack
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


def chat(**kw: object) -> dict[str, object]:
    return {"model": SMALL, "messages": [{"role": "user", "content": "Tell me a long story."}], "temperature": 0,
            **kw}


def smol_engine(stack: tuple[LiveServer, Services, str]) -> LlamaEngine:
    engine = stack[1].engines._engines["smollm2-135m-instruct"]
    assert isinstance(engine, LlamaEngine)
    return engine


def test_http_in_flight_request_gets_503_then_the_next_succeeds(http: httpx.Client,
                                                                stack: tuple[LiveServer, Services, str]) -> None:
    assert http.post("/v1/chat/completions", json=chat(max_tokens=4)).status_code == 200  # loads the model
    engine = smol_engine(stack)
    old = engine.server.pid
    result: dict[str, httpx.Response] = {}
    request = threading.Thread(target=lambda: result.setdefault(
        "r", http.post("/v1/chat/completions", json=chat(max_tokens=900, min_tokens=900))))
    request.start()
    deadline = time.monotonic() + 10
    while engine._inflight == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # generating by now (admitted is not yet decoding; the kill must land mid-generation)
    os.kill(old, signal.SIGKILL)
    request.join(timeout=30)
    response = result["r"]
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "MODEL_RESTARTING" and int(response.headers["Retry-After"]) >= 1
    after = http.post("/v1/chat/completions", json=chat(max_tokens=4))
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 4
    assert engine.server.pid != old


def test_http_stream_killed_midway_ends_with_an_error_event(http: httpx.Client,
                                                            stack: tuple[LiveServer, Services, str]) -> None:
    assert http.post("/v1/chat/completions", json=chat(max_tokens=4)).status_code == 200
    engine = smol_engine(stack)
    old = engine.server.pid
    events: list[dict[str, object]] = []
    with http.stream("POST", "/v1/chat/completions", json=chat(max_tokens=900, min_tokens=900, stream=True)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[6:]))
            if len(events) == 4:
                os.kill(old, signal.SIGKILL)
    assert len(events) > 4 and all("choices" in e for e in events[:4])
    last = events[-1]
    assert last["object"] == "error" and last["code"] == "MODEL_RESTARTING", last
    assert "SIGKILL" in str(last["message"])
    assert not any(e.get("choices") and e["choices"][0].get("finish_reason") for e in events)  # type: ignore[index, union-attr]
    after = http.post("/v1/chat/completions", json=chat(max_tokens=4))
    assert after.status_code == 200 and engine.server.pid != old
