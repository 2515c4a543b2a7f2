"""HTTP server limits on a real uvicorn over loopback: oversized request headers get 431 and the connection is
closed; a client that stops halfway through its headers (slowloris) is disconnected after the header timeout."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from mistral_gateway.config import Settings
from support import LiveServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, max_header_bytes=16 * 1024,
                    header_timeout_seconds=1.0)


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a socket timeout fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_oversized_header_gets_431_and_the_connection_closes(live_server: LiveServer) -> None:
    with connect(live_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # up to 4 MB, far past the 16 KB limit; the server hangs up long before
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            reply = read_all(sock)
        except ConnectionResetError:
            reply = b""  # closed with unread data: the reset may overtake the 431
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431 ")


def test_oversized_header_through_a_client(live_server: LiveServer) -> None:
    r = httpx.get(live_server.base_url + "/health", headers={"X-Big": "a" * 20_000, "X-Request-ID": "big-1"},
                  timeout=10)
    assert r.status_code == 431 and r.headers["connection"] == "close"
    # a fresh id, as on every response: the client's own sits among the headers being refused
    assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])


def test_many_headers_under_the_limit_are_fine(live_server: LiveServer) -> None:
    headers = {f"X-H{i}": "v" * 100 for i in range(100)}  # ~11 KB
    assert httpx.get(live_server.base_url + "/health", headers=headers, timeout=10).status_code == 200


def test_half_sent_headers_are_closed_after_the_timeout(live_server: LiveServer) -> None:
    with connect(live_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        reply = read_all(sock)  # returns only because the server closes (the socket timeout is 10 s)
    assert reply.startswith(b"HTTP/1.1 408 ") and re.search(rb"\r\nx-request-id: [0-9a-f]{16}\r\n", reply)


def test_silent_connection_is_closed_after_the_timeout(live_server: LiveServer) -> None:
    with connect(live_server) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_keep_alive_requests_still_work(live_server: LiveServer) -> None:
    with connect(live_server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 ")
