"""Transport failures between the llama engine and its llama.cpp server become EngineErrors (never raw httpx
exceptions), and the supervisor restarts a dead server once and gives up on one that keeps failing to start.
No model: httpx.MockTransport stands in for the worker's loopback listener."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines import llama
from mistral_gateway.engines.base import ChatMessage, EngineError, EngineUnavailable, SamplingParams
from mistral_gateway.engines.worker_process import LoopbackServer, Supervisor, WorkerStartError
from mistral_gateway.errors import InternalError, ServiceUnavailable
from mistral_gateway.services.completions import engine_errors, stream_chunks

MODEL = "unit-llama"
Handler = Callable[[httpx.Request], httpx.Response]
TRANSPORT_ERRORS = [httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
                    httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout]


def loopback(handler: Handler, model_id: str = MODEL) -> LoopbackServer:
    return LoopbackServer("http://127.0.0.1:9", "key", model_id, transport=httpx.MockTransport(handler))


def raising(exc_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


class Chunks(httpx.SyncByteStream):
    """A streamed body: some SSE lines, then optionally a transport failure (the worker died mid-stream)."""

    def __init__(self, lines: list[str], error: type[httpx.TransportError] | None = None) -> None:
        self.lines = lines
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            yield f"{line}\n\n".encode()
        if self.error is not None:
            raise self.error("peer closed connection without sending complete message body")


def sse(text: str, finish: str | None = None) -> str:
    chunk: dict[str, Any] = {"choices": [{"text": text, "finish_reason": finish}]}
    if finish:
        chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": 2}
    return "data: " + json.dumps(chunk)


# -- LoopbackServer ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TRANSPORT_ERRORS)
def test_post_transport_errors_become_engine_errors(error: type[httpx.TransportError]) -> None:
    with pytest.raises(EngineError) as info:
        loopback(raising(error)).post("/tokenize", {"content": "hi"})
    message = str(info.value)
    assert MODEL in message and "/tokenize" in message and error.__name__ in message
    assert ("timed out" in message) == issubclass(error, httpx.TimeoutException)
    assert isinstance(info.value.__cause__, error)


@pytest.mark.parametrize("error", TRANSPORT_ERRORS)
def test_stream_transport_errors_become_engine_errors(error: type[httpx.TransportError]) -> None:
    with pytest.raises(EngineError, match=error.__name__):
        loopback(raising(error)).handle_completions({"prompt": [1]}, lambda chunk: False)


@pytest.mark.parametrize("error", [httpx.RemoteProtocolError, httpx.ConnectError])
def test_a_connection_closed_before_answering_is_tried_once_more(error: type[httpx.TransportError]) -> None:
    """llama-server drops idle keep-alive connections after 5 s; a request sent on one just then gets no answer."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) % 2 == 1:
            raise error("Server disconnected without sending a response.", request=request)
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2]})
        return httpx.Response(200, stream=Chunks([sse("a"), sse("", "stop")]))

    server = loopback(handler)
    assert server.post("/tokenize", {"content": "hi"}) == {"tokens": [1, 2]}
    received: list[dict[str, Any]] = []
    assert server.handle_completions({}, received.append) is None
    assert len(received) == 2
    assert calls == ["/tokenize", "/tokenize", "/v1/completions", "/v1/completions"]


def test_a_stream_that_broke_after_answering_is_not_sent_again() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, stream=Chunks([sse("a")], httpx.RemoteProtocolError))

    with pytest.raises(EngineError, match="RemoteProtocolError"):
        loopback(handler).handle_completions({}, lambda chunk: False)
    assert calls == ["/v1/completions"]  # generation had started: never twice


def test_post_non_2xx_and_invalid_json() -> None:
    failing = loopback(lambda r: httpx.Response(500, text="slot crashed"))
    with pytest.raises(EngineError, match=r"unit-llama.*/tokenize failed \(500\): slot crashed"):
        failing.post("/tokenize", {})
    garbled = loopback(lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(EngineError, match="invalid JSON"):
        garbled.post("/apply-template", {})


def test_stream_refusals_are_returned_as_errors() -> None:
    overflow = {"error": {"type": "exceed_context_size_error", "message": "too long", "n_ctx": 8}}
    refused = loopback(lambda r: httpx.Response(400, json=overflow))
    assert refused.handle_completions({}, lambda chunk: False) == overflow
    html = loopback(lambda r: httpx.Response(502, text="bad gateway"))
    assert html.handle_completions({}, lambda chunk: False) == {"error": {"message": "HTTP 502: bad gateway"}}
    odd = loopback(lambda r: httpx.Response(500, json=["not", "an", "object"]))
    assert "HTTP 500" in odd.handle_completions({}, lambda chunk: False)["error"]["message"]


def test_failure_in_the_middle_of_a_stream() -> None:
    server = loopback(lambda r: httpx.Response(200, stream=Chunks([sse("a"), sse("b")], httpx.RemoteProtocolError)))
    received: list[dict[str, Any]] = []
    with pytest.raises(EngineError, match="RemoteProtocolError") as info:
        server.handle_completions({}, received.append)
    assert len(received) == 2 and not isinstance(info.value, httpx.HTTPError)


def test_malformed_chunk_and_early_stop() -> None:
    garbled = loopback(lambda r: httpx.Response(200, stream=Chunks([sse("a"), "data: {oops"])))
    with pytest.raises(EngineError, match="malformed stream chunk"):
        garbled.handle_completions({}, lambda chunk: False)
    fine = loopback(lambda r: httpx.Response(200, stream=Chunks([sse("a"), sse("b"), "data: [DONE]"])))
    seen: list[dict[str, Any]] = []
    assert fine.handle_completions({}, lambda chunk: seen.append(chunk) or True) is None  # truthy: stop
    assert len(seen) == 1


# -- through the engine and the service mapping ------------------------------------------------------------------


class DeadWorker(LoopbackServer):
    """Answers like a worker that was killed: every transport failure means 'restarting'."""

    def failure(self, what: str, exc: httpx.HTTPError) -> EngineError:
        return EngineUnavailable(f"model {self.model_id!r}: its llama.cpp worker was killed by SIGKILL during {what}",
                                 retry_after=2.0)


def engine_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, completions: Handler,
                server: type[LoopbackServer] = LoopbackServer) -> llama.LlamaEngine:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2, 3]})
        if request.url.path == "/apply-template":
            return httpx.Response(200, json={"prompt": "<user>hi"})
        return completions(request)

    def start(config: dict[str, Any], model_id: str) -> LoopbackServer:
        return server("http://127.0.0.1:9", config["key"], model_id, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(llama, "WorkerProcess", start)
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    return llama.LlamaEngine(ModelEntry(id=MODEL, path=str(weights), max_context_length=64, parallel=1), weights,
                             threads=1, queue_limit=1)


async def collect(engine: llama.LlamaEngine) -> list[str]:
    out = []
    async for delta in engine.stream("hi", SamplingParams(max_tokens=8)):
        out.append(delta.text)
    return out


def test_engine_stream_failure_midway_is_an_engine_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = engine_with(monkeypatch, tmp_path,
                         lambda r: httpx.Response(200, stream=Chunks([sse("a"), sse("b")], httpx.ReadError)))
    received: list[str] = []

    async def run() -> None:
        async for delta in engine.stream("hi", SamplingParams(max_tokens=8)):
            received.append(delta.text)

    try:
        with pytest.raises(EngineError, match="ReadError") as info:
            asyncio.run(run())
        assert received == ["a", "b"]
        mapped = engine_errors(info.value)
        assert isinstance(mapped, InternalError) and mapped.code == "ENGINE_ERROR"
    finally:
        engine.close()


def test_engine_stream_cut_short_without_error_is_an_engine_error(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    engine = engine_with(monkeypatch, tmp_path, lambda r: httpx.Response(200, stream=Chunks([sse("a")])))
    try:
        with pytest.raises(EngineError, match="ended before the generation did"):
            asyncio.run(collect(engine))
    finally:
        engine.close()


def test_engine_render_connect_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = engine_with(monkeypatch, tmp_path, lambda r: httpx.Response(200))
    monkeypatch.setattr(engine.server, "_http", httpx.Client(base_url="http://127.0.0.1:9",
                                                             transport=httpx.MockTransport(raising(httpx.ConnectError))))
    try:
        with pytest.raises(EngineError, match=r"apply-template failed \(ConnectError"):
            asyncio.run(engine.render([llama.ChatMessage("user", "hi")]))
    finally:
        engine.close()


def test_dead_worker_mid_stream_maps_to_503_and_an_error_event(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def completions(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, stream=Chunks([sse("a")], httpx.RemoteProtocolError))

    engine = engine_with(monkeypatch, tmp_path, completions, server=DeadWorker)

    async def chunks() -> list[Any]:
        out = []
        async for chunk in stream_chunks("id", MODEL, 0, [lambda: engine.stream("hi", SamplingParams(max_tokens=8))]):
            out.append(chunk)
        return out

    try:
        with pytest.raises(ServiceUnavailable) as info:
            asyncio.run(chunks())
        err = info.value
        assert err.status == 503 and err.code == "MODEL_RESTARTING" and err.headers == {"Retry-After": "2"}
        assert "SIGKILL" in err.message
        assert len(calls) == 1  # output was already sent: never retried
    finally:
        engine.close()


class DyingWorker(DeadWorker):
    """Dies at its first request: nothing answers, and from then on it is not alive."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.dead = False

    def alive(self) -> bool:
        return not self.dead

    def failure(self, what: str, exc: httpx.HTTPError) -> EngineError:
        self.dead = True
        return super().failure(what, exc)

    def note_exit(self) -> None:
        pass

    def reap(self) -> None:
        pass


@pytest.mark.parametrize("dies_at", ["/tokenize", "/v1/completions"])
def test_worker_found_dead_before_any_output_is_retried_once_on_a_new_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dies_at: str) -> None:
    servers: list[LoopbackServer] = []

    def good(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2, 3]})
        return httpx.Response(200, stream=Chunks([sse("a"), sse("b", "stop")]))

    def dying(request: httpx.Request) -> httpx.Response:
        if request.url.path == dies_at:
            raise httpx.ConnectError("connection refused", request=request)
        return good(request)

    def start(config: dict[str, Any], model_id: str) -> LoopbackServer:
        kind, handler = (DyingWorker, dying) if not servers else (LoopbackServer, good)
        servers.append(kind("http://127.0.0.1:9", config["key"], model_id, transport=httpx.MockTransport(handler)))
        return servers[-1]

    monkeypatch.setattr(llama, "WorkerProcess", start)
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    engine = llama.LlamaEngine(ModelEntry(id=MODEL, max_context_length=64, parallel=1), weights, threads=1,
                               queue_limit=1)
    try:
        generation = asyncio.run(engine.complete("hi", SamplingParams(max_tokens=8)))
        assert generation.text == "ab" and generation.finish_reason == "stop" and generation.completion_tokens == 2
        assert len(servers) == 2 and engine.server is servers[1]
    finally:
        engine.close()


# -- Supervisor ----------------------------------------------------------------------------------------------------


class FakeServer:
    def __init__(self) -> None:
        self.up = True
        self.reaped = self.closed = self.noted = 0

    def alive(self) -> bool:
        return self.up

    def note_exit(self) -> None:
        self.noted += 1

    def reap(self) -> None:
        self.reaped += 1

    def close(self) -> None:
        self.closed += 1


def test_supervisor_restarts_a_dead_server_once_for_concurrent_callers() -> None:
    started: list[FakeServer] = []

    def start() -> FakeServer:
        time.sleep(0.05 if started else 0)
        started.append(FakeServer())
        return started[-1]

    supervisor = Supervisor(start, MODEL)
    first = supervisor.current()
    first.up = False
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(supervisor.current())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 2 and supervisor.starts == 2
    assert all(s is started[1] for s in got)
    assert first.noted == 1 and first.reaped == 1
    supervisor.close()
    assert started[1].closed == 1
    started[1].up = False
    with pytest.raises(EngineError, match="closed"):
        supervisor.current()


def test_supervisor_gives_up_on_a_worker_that_keeps_failing_to_start() -> None:
    attempts = 0

    def start() -> FakeServer:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            raise WorkerStartError(f"model {MODEL!r}: the llama.cpp worker exited with code 1 before it was ready; "
                                   f"its stderr: llama_worker: cannot load /x.gguf (not a GGUF file)")
        return FakeServer()

    supervisor = Supervisor(start, MODEL, max_failed_starts=3, window=60.0, backoff=0.0)
    supervisor.server.up = False
    with pytest.raises(EngineError) as info:
        supervisor.current()
    assert attempts == 4 and not isinstance(info.value, EngineUnavailable)
    assert "'unit-llama'" in str(info.value) and "failed to start 3 times" in str(info.value)
    assert "not a GGUF file" in str(info.value)
    with pytest.raises(EngineError, match="failed to start 3 times"):
        supervisor.current()
    assert attempts == 4  # no new attempt inside the window
    supervisor._window = 0.0  # the window has passed: it tries again (and fails again, three times at most)
    with pytest.raises(EngineError):
        supervisor.current()
    assert attempts == 7


def test_render_tokenizes_once_for_the_stream_that_follows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    paths: list[str] = []

    def completions(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["prompt"] == [1, 2, 3]
        return httpx.Response(200, stream=Chunks([sse("a"), sse("", "stop")]))

    engine = engine_with(monkeypatch, tmp_path, completions)
    original = engine._post

    def counting(path: str, body: dict[str, Any]) -> Any:
        paths.append(path)
        return original(path, body)

    engine._post = counting  # type: ignore[method-assign]

    async def run() -> list[str]:
        prompt = await engine.render([ChatMessage("user", "hi")])
        out = [d.text async for d in engine.stream(prompt, SamplingParams(max_tokens=8))]
        out += [d.text async for d in engine.stream(prompt, SamplingParams(max_tokens=8))]  # not remembered twice
        return out

    try:
        assert asyncio.run(run()) == ["a", "", "a", ""]
    finally:
        engine.close()
    assert paths == ["/apply-template", "/tokenize", "/tokenize"]
