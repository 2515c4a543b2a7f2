"""A client that leaves stops its request's work, non-streamed too (issue 9: Starlette does not cancel a plain
handler, so an abandoned generation ran to its end). A real server on loopback; the engine is the fake one, made
slow, so the test sees whether the generation was cancelled."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import Delta, SamplingParams
from mistral_gateway.engines.fake import FakeTextEngine
from support import LiveServer

pytestmark = pytest.mark.e2e


class Generation:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.finished = threading.Event()

    async def stream(self, engine: FakeTextEngine, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        self.started.set()
        try:
            for _ in range(600):  # a minute of "generation", a token every 0.1 s
                await asyncio.sleep(0.1)
                yield Delta("x")
            self.finished.set()
            yield Delta("", "length", 1, 600)
        finally:
            self.stopped.set()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", engine="fake", capabilities=["completion_chat"])])


@pytest.fixture
def generation(monkeypatch: pytest.MonkeyPatch) -> Generation:
    generation = Generation()
    monkeypatch.setattr(FakeTextEngine, "stream", lambda self, prompt, params: generation.stream(self, prompt, params))
    return generation


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_stops_the_generation(generation: Generation, live_server: LiveServer, token: str,
                                                    stream: bool) -> None:
    server = live_server
    body = json.dumps({"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}],
                       "stream": stream}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % token.encode()
        sock.sendall(head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert generation.started.wait(30)
    assert generation.stopped.wait(30)  # bounded wait for the event, not a timing claim: a minute's work otherwise
    assert not generation.finished.is_set()
