"""Transport failures between the llama engine and its llama.cpp server become EngineErrors (never raw httpx or
aiohttp exceptions), and the supervisor restarts a dead server once and gives up on one that keeps failing to start.
No model: httpx.MockTransport stands in for the worker's JSON calls (/tokenize, /apply-template) and a scripted
loopback server (``fake_llama``) for its streamed completions, which are read with aiohttp."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from fake_llama import FakeLlama, Reply, sse
from mistral_gateway.config import ModelEntry
from mistral_gateway.engines import llama
from mistral_gateway.engines.base import ChatMessage, EngineError, EngineUnavailable, SamplingParams
from mistral_gateway.engines.worker_process import LoopbackServer, Supervisor, WorkerStartError
from mistral_gateway.errors import BadGateway, ServiceUnavailable
from mistral_gateway.services.completions import engine_errors, stream_chunks
from support import free_port

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


async def drain(server: LoopbackServer, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [chunk async for chunk in server.completions(body or {"prompt": [1]})]


def stream_of(fake: FakeLlama, model_id: str = MODEL) -> LoopbackServer:
    """A LoopbackServer whose completions go to ``fake`` (its JSON calls are not used)."""
    return LoopbackServer(fake.address, "key", model_id, transport=httpx.MockTransport(lambda r: httpx.Response(500)))


def closed_address() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused


# -- LoopbackServer ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TRANSPORT_ERRORS)
def test_post_transport_errors_become_engine_errors(error: type[httpx.TransportError]) -> None:
    with pytest.raises(EngineError) as info:
        loopback(raising(error)).post("/tokenize", {"content": "hi"})
    message = str(info.value)
    assert MODEL in message and "/tokenize" in message and error.__name__ in message
    assert ("timed out" in message) == issubclass(error, httpx.TimeoutException)
    assert isinstance(info.value.__cause__, error)
    # issue 9: '/tokenize timed out' answered 500; an engine failure is a 503 (timeout) or 502, with Retry-After
    mapped = engine_errors(info.value)
    assert mapped.status == (503 if issubclass(error, httpx.TimeoutException) else 502)
    assert mapped.code == ("MODEL_TIMEOUT" if mapped.status == 503 else "ENGINE_ERROR")
    assert float(mapped.headers["Retry-After"]) > 0


def test_stream_refused_connection_becomes_an_engine_error() -> None:
    server = LoopbackServer(closed_address(), "key", MODEL)
    try:
        with pytest.raises(EngineError) as info:
            asyncio.run(drain(server))
    finally:
        server.close()
    message = str(info.value)
    assert MODEL in message and "/v1/completions failed" in message and "ClientConnectorError" in message
    assert not isinstance(info.value, EngineUnavailable)  # a LoopbackServer has no process that could have died


@pytest.mark.parametrize(("error", "kind"), [(aiohttp.ConnectionTimeoutError("slow"), "timed out"),
                                             (aiohttp.ServerTimeoutError("slow"), "timed out"),
                                             (aiohttp.ClientPayloadError("cut"), "failed")])
def test_stream_failures_are_named(error: Exception, kind: str) -> None:
    server = LoopbackServer("http://127.0.0.1:9", "key", MODEL)
    message = str(server.failure("/v1/completions", error))
    server.close()
    assert message.startswith(f"model {MODEL!r}: llama.cpp /v1/completions {kind} ({type(error).__name__}")


def test_a_connection_closed_before_answering_is_tried_once_more() -> None:
    """llama-server drops idle keep-alive connections after 5 s; a request sent on one just then gets no answer."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) % 2 == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, json={"tokens": [1, 2]})

    assert loopback(handler).post("/tokenize", {"content": "hi"}) == {"tokens": [1, 2]}
    assert calls == ["/tokenize", "/tokenize"]

    answers = iter([Reply(silent=True), Reply([sse("a"), sse("", "stop")])])
    with FakeLlama(lambda path, body: next(answers)) as fake:
        server = stream_of(fake)
        try:
            assert len(asyncio.run(drain(server))) == 2
        finally:
            server.close()
    assert [path for path, _ in fake.requests] == ["/v1/completions", "/v1/completions"]


@pytest.mark.parametrize("sent", [1, 2])
def test_a_stream_that_broke_after_answering_fails_and_is_not_sent_again(sent: int) -> None:
    with FakeLlama(lambda path, body: Reply([sse(t) for t in "ab"[:sent]], cut=True)) as fake:
        server = stream_of(fake)
        received: list[dict[str, Any]] = []

        async def run() -> None:
            async for chunk in server.completions({"prompt": [1]}):
                received.append(chunk)

        try:
            with pytest.raises(EngineError, match="/v1/completions failed") as info:
                asyncio.run(run())
        finally:
            server.close()
    assert len(received) == sent and len(fake.requests) == 1  # generation had started: never twice
    assert type(info.value) is EngineError  # not aiohttp's exception


def test_stream_sends_the_body_and_reuses_its_connection() -> None:
    with FakeLlama(lambda path, body: Reply([sse("a"), sse("", "stop"), "data: [DONE]"])) as fake:
        server = stream_of(fake)

        async def twice() -> list[list[dict[str, Any]]]:
            return [await drain(server, {"prompt": [7, 8], "stream": True}), await drain(server)]

        try:
            first, second = asyncio.run(twice())
        finally:
            server.close()
    assert first == second and [c["choices"][0]["text"] for c in first] == ["a", ""]  # [DONE] is not a chunk
    assert fake.requests[0] == ("/v1/completions", {"prompt": [7, 8], "stream": True})
    assert fake.connections == 1  # kept alive between the two streams


def test_post_non_2xx_and_invalid_json() -> None:
    failing = loopback(lambda r: httpx.Response(500, text="slot crashed"))
    with pytest.raises(EngineError, match=r"unit-llama.*/tokenize failed \(500\): slot crashed"):
        failing.post("/tokenize", {})
    garbled = loopback(lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(EngineError, match="invalid JSON"):
        garbled.post("/apply-template", {})


def test_stream_refusals_are_returned_as_errors() -> None:
    overflow = {"error": {"type": "exceed_context_size_error", "message": "too long", "n_ctx": 8}}
    replies = {
        "overflow": Reply(status=400, body=json.dumps(overflow).encode()),
        "html": Reply(status=502, body=b"bad gateway"),
        "odd": Reply(status=500, body=b'["not", "an", "object"]'),
    }
    with FakeLlama(lambda path, body: replies[body["case"]]) as fake:
        server = stream_of(fake)

        async def run(case: str) -> list[dict[str, Any]]:
            return await drain(server, {"case": case})

        try:
            assert asyncio.run(run("overflow")) == [overflow]
            assert asyncio.run(run("html")) == [{"error": {"message": "HTTP 502: bad gateway"}}]
            assert "HTTP 500" in asyncio.run(run("odd"))[0]["error"]["message"]
        finally:
            server.close()


def test_malformed_chunk_and_early_stop() -> None:
    replies = {"garbled": Reply([sse("a"), "data: {oops"]), "fine": Reply([sse("a"), sse("b"), sse("", "stop")])}
    with FakeLlama(lambda path, body: replies[body["case"]]) as fake:
        server = stream_of(fake)

        async def run() -> list[dict[str, Any]]:
            with pytest.raises(EngineError, match="malformed stream chunk"):
                await drain(server, {"case": "garbled"})
            stream = server.completions({"case": "fine"})
            first = await anext(stream)
            await stream.aclose()  # stops early: closes the connection (llama.cpp stops the slot)
            return [first, *await drain(server, {"case": "fine"})]  # a new connection works

        try:
            seen = asyncio.run(run())
        finally:
            server.close()
    assert [c["choices"][0]["text"] for c in seen] == ["a", "a", "b", ""]


# -- through the engine and the service mapping ------------------------------------------------------------------


class DeadWorker(LoopbackServer):
    """Answers like a worker that was killed: every transport failure means 'restarting'."""

    def failure(self, what: str, exc: Exception) -> EngineError:
        return EngineUnavailable(f"model {self.model_id!r}: its llama.cpp worker was killed by SIGKILL during {what}",
                                 retry_after=2.0)


def worker_json(request: httpx.Request) -> httpx.Response:
    """The worker's JSON calls: /tokenize and /apply-template answer, anything else is a 404."""
    if request.url.path == "/tokenize":
        return httpx.Response(200, json={"tokens": [1, 2, 3]})
    if request.url.path == "/apply-template":
        return httpx.Response(200, json={"prompt": "<user>hi"})
    return httpx.Response(404)


def engine_with(tmp_path: Path, fake: FakeLlama | None, server: type[LoopbackServer] = LoopbackServer,
                handler: Handler = worker_json) -> llama.LlamaEngine:
    """A LlamaEngine whose worker answers its JSON calls through a mock transport running ``handler`` and streams
    completions from ``fake`` (None: from an address where nothing listens)."""
    address = fake.address if fake is not None else closed_address()

    def start(config: dict[str, Any], model_id: str) -> LoopbackServer:
        return server(address, config["key"], model_id, transport=httpx.MockTransport(handler))

    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    return llama.LlamaEngine(ModelEntry(id=MODEL, path=str(weights), max_context_length=64, parallel=1), weights,
                             threads=1, queue_limit=1, server_factory=start)


async def collect(engine: llama.LlamaEngine) -> list[str]:
    out = []
    async for delta in engine.stream("hi", SamplingParams(max_tokens=8)):
        out.append(delta.text)
    return out


def test_engine_stream_failure_midway_is_an_engine_error(tmp_path: Path) -> None:
    with FakeLlama(lambda path, body: Reply([sse("a"), sse("b")], cut=True)) as fake:
        engine = engine_with(tmp_path, fake)
        received: list[str] = []

        async def run() -> None:
            async for delta in engine.stream("hi", SamplingParams(max_tokens=8)):
                received.append(delta.text)

        try:
            with pytest.raises(EngineError, match="failed") as info:
                asyncio.run(run())
            assert received == ["a", "b"]
            mapped = engine_errors(info.value)
            assert isinstance(mapped, BadGateway) and mapped.code == "ENGINE_ERROR"  # 502, never a 500
            assert mapped.status == 502 and mapped.headers["Retry-After"] == "2"
        finally:
            engine.close()


def test_engine_stream_cut_short_without_error_is_an_engine_error(tmp_path: Path) -> None:
    with FakeLlama(lambda path, body: Reply([sse("a")])) as fake:
        engine = engine_with(tmp_path, fake)
        try:
            with pytest.raises(EngineError, match="ended before the generation did"):
                asyncio.run(collect(engine))
        finally:
            engine.close()


def test_engine_stream_refusal_is_the_engine_error_it_names(tmp_path: Path) -> None:
    overflow = {"error": {"type": "exceed_context_size_error", "message": "too long", "n_prompt_tokens": 70,
                          "n_ctx": 64}}
    with FakeLlama(lambda path, body: Reply(status=400, body=json.dumps(overflow).encode())) as fake:
        engine = engine_with(tmp_path, fake)
        try:
            with pytest.raises(llama.ContextOverflow, match="too long") as info:
                asyncio.run(collect(engine))
            assert info.value.prompt_tokens == 70 and info.value.context_length == 64
        finally:
            engine.close()


def test_engine_render_connect_error(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, None, handler=raising(httpx.ConnectError))
    try:
        with pytest.raises(EngineError, match=r"apply-template failed \(ConnectError"):
            asyncio.run(engine.render([llama.ChatMessage("user", "hi")]))
    finally:
        engine.close()


def test_dead_worker_mid_stream_maps_to_503_and_an_error_event(tmp_path: Path) -> None:
    with FakeLlama(lambda path, body: Reply([sse("a")], cut=True)) as fake:
        engine = engine_with(tmp_path, fake, server=DeadWorker)

        async def chunks() -> list[Any]:
            out = []
            async for chunk in stream_chunks("id", MODEL, 0,
                                             [lambda: engine.stream("hi", SamplingParams(max_tokens=8))]):
                out.append(chunk)
            return out

        try:
            with pytest.raises(ServiceUnavailable) as info:
                asyncio.run(chunks())
            err = info.value
            assert err.status == 503 and err.code == "MODEL_RESTARTING" and err.headers == {"Retry-After": "2"}
            assert "SIGKILL" in err.message
            assert len(fake.requests) == 1  # output was already sent: never retried
        finally:
            engine.close()


class DyingWorker(DeadWorker):
    """Dies at its first request: nothing answers, and from then on it is not alive."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.dead = False

    def alive(self) -> bool:
        return not self.dead

    def failure(self, what: str, exc: Exception) -> EngineError:
        self.dead = True
        return super().failure(what, exc)

    def note_exit(self) -> None:
        pass

    def reap(self) -> None:
        self.stream.close()


@pytest.mark.parametrize("dies_at", ["/tokenize", "/v1/completions"])
def test_worker_found_dead_before_any_output_is_retried_once_on_a_new_one(
        tmp_path: Path, dies_at: str) -> None:
    servers: list[LoopbackServer] = []
    fake = FakeLlama(lambda path, body: Reply([sse("a"), sse("b", "stop")]))

    def good(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"tokens": [1, 2, 3]})

    def dying(request: httpx.Request) -> httpx.Response:
        if request.url.path == dies_at:
            raise httpx.ConnectError("connection refused", request=request)
        return good(request)

    def start(config: dict[str, Any], model_id: str) -> LoopbackServer:
        # the dying worker's stream listener is gone too when it dies there (connections refused)
        dead_stream = dies_at == "/v1/completions"
        kind, handler, address = ((DyingWorker, dying, closed_address() if dead_stream else fake.address)
                                  if not servers else (LoopbackServer, good, fake.address))
        servers.append(kind(address, config["key"], model_id, transport=httpx.MockTransport(handler)))
        return servers[-1]

    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    engine = llama.LlamaEngine(ModelEntry(id=MODEL, max_context_length=64, parallel=1), weights, threads=1,
                               queue_limit=1, server_factory=start)
    try:
        generation = asyncio.run(engine.complete("hi", SamplingParams(max_tokens=8)))
        assert generation.text == "ab" and generation.finish_reason == "stop" and generation.completion_tokens == 2
        assert len(servers) == 2 and engine.server is servers[1]
        assert len(fake.requests) == 1  # the completion reached a worker once: the new one
    finally:
        engine.close()
        fake.close()


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
        time.sleep(0.05 if started else 0)  # a slow restart is the case under test: the others queue on it
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


def test_render_tokenizes_once_for_the_stream_that_follows(tmp_path: Path) -> None:
    paths: list[str] = []

    fake = FakeLlama(lambda path, body: Reply([sse("a"), sse("", "stop")]))
    engine = engine_with(tmp_path, fake)
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
        fake.close()
    assert paths == ["/apply-template", "/tokenize", "/tokenize"]
    assert [body["prompt"] for _, body in fake.requests] == [[1, 2, 3], [1, 2, 3]]


@pytest.mark.parametrize("stale", ["reset_reused", "idle_reset_s"])
def test_a_stale_keep_alive_connection_is_retried_on_a_fresh_one(stale: str) -> None:
    """Issue 9: under load the worker closes keep-alive connections the gateway still holds as idle. ``reset_reused``:
    the next request on one is reset before any answer (``Connection reset by peer``); ``idle_reset_s``: the worker
    reset them while idle but the gateway's event loop (busy, as under load) has not processed it yet, so the request
    fails while its body is written (``Can not write request body``). Never answered, so it is sent once more, on a
    new connection: not on another pooled one, which is stale too."""
    option: dict[str, Any] = {"reset_reused": True} if stale == "reset_reused" else {"idle_reset_s": 0.05}
    with FakeLlama(lambda path, body: Reply([sse("a"), sse("", "stop")]), **option) as fake:
        server = stream_of(fake)

        async def run() -> list[list[dict[str, Any]]]:
            warm = await asyncio.gather(*(drain(server) for _ in range(3)))  # three pooled connections
            assert fake.connections == 3 and all(len(chunks) == 2 for chunks in warm)
            time.sleep(0.3)  # a blocked loop: resets arrive but are not processed before the next requests
            return await asyncio.gather(*(drain(server) for _ in range(2)))

        try:
            later = asyncio.run(run())
        finally:
            server.close()
    assert [len(chunks) for chunks in later] == [2, 2]
    assert fake.connections == 5  # each retry on a connection of its own
    assert len(fake.requests) == 5 and fake.resets == (2 if stale == "reset_reused" else 0)


def test_the_worker_has_an_http_thread_for_every_connection_the_engine_may_hold(tmp_path: Path) -> None:
    """cpp-httplib holds a thread per open connection (idle keep-alive ones too). With llama.cpp's default pool
    (n_parallel + 4) a load of 40 admitted requests waited in 5 s waves for idle connections to time out."""
    from mistral_gateway.engines.llama_worker import build_params

    configs: list[dict[str, Any]] = []
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    engine = llama.LlamaEngine(ModelEntry(id=MODEL, path=str(weights), parallel=8), weights, threads=1,
                               queue_limit=32, server_factory=lambda config, model_id: configs.append(config) or
                               LoopbackServer("http://127.0.0.1:9", config["key"], model_id))
    engine.close()
    streams, pool_threads = 8 + 32, engine._pool._max_workers
    assert configs[0]["http_threads"] > streams + pool_threads
    cpus = os.sched_getaffinity(0)
    try:  # importing xllamacpp pins the importing thread to one CPU (engines.llama undoes it after each load)
        assert build_params(configs[0] | {"path": str(weights)}).n_threads_http == configs[0]["http_threads"]
    finally:
        os.sched_setaffinity(0, cpus)


def test_a_seeded_request_evaluates_its_whole_prompt(tmp_path: Path) -> None:
    """Issue 9: with the prompt cache a warm seeded call evaluated only the prompt's tail and answered differently
    from the cold one; seeded requests skip the cache, the others keep it."""
    with FakeLlama(lambda path, body: Reply([sse("a"), sse("", "stop")])) as fake:
        engine = engine_with(tmp_path, fake)

        async def run(seed: int | None) -> None:
            async for _ in engine.stream("hi", SamplingParams(max_tokens=8, seed=seed)):
                pass

        try:
            for seed in (7, None, 0):
                asyncio.run(run(seed))
        finally:
            engine.close()
    assert [(body["seed"], body["cache_prompt"]) for _, body in fake.requests] == [(7, False), (-1, True), (0, False)]
