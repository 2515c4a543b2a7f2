"""Responses over a real uvicorn server on loopback leave in one write (head and body together) and stay correct:
JSON answers and errors, a HEAD answer (headers only, nothing held back), an interim 100 Continue before the final
answer, and a streamed download."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mistral_gateway.http import connection
from support import LiveServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every write the server's response cycles make to their connections."""
    seen: list[bytes] = []

    class Recording(connection.OneWriteResponse):
        def __init__(self, transport: Any) -> None:
            class Spy:
                def write(self, data: bytes) -> None:
                    seen.append(data)
                    transport.write(data)

                def __getattr__(self, name: str) -> Any:
                    return getattr(transport, name)

            super().__init__(Spy())  # type: ignore[arg-type]

    monkeypatch.setattr(connection, "OneWriteResponse", Recording)
    yield seen


def exchange(server: LiveServer, request: bytes, *, expect_continue: bool = False) -> bytes:
    """Sends ``request`` (``Connection: close``) and reads the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        if expect_continue:
            head, _, body = request.partition(b"\r\n\r\n")
            sock.sendall(head + b"\r\n\r\n")
            interim = sock.recv(65536)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
        else:
            sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_json_answers_leave_in_one_write(live_server: LiveServer, token: str, writes: list[bytes]) -> None:
    reply = exchange(live_server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'\r\n\r\n{"status":"ok"}')
    assert writes == [reply]
    writes.clear()
    r = httpx.get(live_server.base_url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert len(writes) == 1 and writes[0].endswith(r.content)
    writes.clear()
    r = httpx.post(live_server.base_url + "/v1/ocr", headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10)
    assert r.status_code == 422 and "detail" in r.json()
    assert len(writes) == 1 and writes[0].endswith(r.content)


def test_a_head_answer_is_not_held(live_server: LiveServer, writes: list[bytes]) -> None:
    reply = exchange(live_server, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\n") and b"content-length: 15" in reply


def test_an_interim_continue_then_the_answer(live_server: LiveServer, token: str, writes: list[bytes]) -> None:
    body = b"{}"
    reply = exchange(live_server, b"POST /v1/ocr HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n" + body, expect_continue=True)
    assert reply.startswith(b"HTTP/1.1 422 ") and b'"detail"' in reply
    assert writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n" and writes[1:] == [reply]


def test_a_streamed_download(live_server: LiveServer, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    content = bytes(range(256)) * 1000
    up = httpx.post(live_server.base_url + "/v1/files", headers=auth, files={"file": ("a.jsonl", content)},
                    data={"purpose": "batch"}, timeout=10)
    assert up.status_code == 200, up.text
    r = httpx.get(live_server.base_url + f"/v1/files/{up.json()['id']}/content", headers=auth, timeout=10)
    assert r.status_code == 200 and r.content == content and r.headers["content-length"] == str(len(content))
