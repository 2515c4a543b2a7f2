"""``OneWriteResponse``: a response head with a Content-Length leaves in one write with the body's first bytes;
interim 100 Continue heads, chunked heads and every later write pass straight through; closing sends a held head.
(Over a real uvicorn server: tests/e2e/test_response_writes.py.)"""

from __future__ import annotations

from mistral_gateway.http.connection import OneWriteResponse

HEAD = b"HTTP/1.1 200 OK\r\ndate: x\r\nserver: uvicorn\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_the_head_waits_for_the_body() -> None:
    transport = Transport()
    out = OneWriteResponse(transport)  # type: ignore[arg-type]
    out.write(HEAD)
    assert transport.writes == []
    out.write(b"{}")
    assert transport.writes == [HEAD + b"{}"]


def test_a_continue_passes_and_the_final_head_still_waits() -> None:
    transport = Transport()
    out = OneWriteResponse(transport)  # type: ignore[arg-type]
    out.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    out.write(HEAD)
    out.write(b"{}")
    assert transport.writes[1:] == [HEAD + b"{}"]


def test_a_chunked_head_and_later_writes_pass_straight_through() -> None:
    transport = Transport()
    out = OneWriteResponse(transport)  # type: ignore[arg-type]
    out.write(CHUNKED)
    assert transport.writes == [CHUNKED]
    out.write(HEAD)  # body bytes that look like a head are body bytes
    assert transport.writes == [CHUNKED, HEAD]


def test_body_writes_after_the_first_are_not_held() -> None:
    transport = Transport()
    out = OneWriteResponse(transport)  # type: ignore[arg-type]
    out.write(HEAD)
    out.write(b"{")
    out.write(HEAD)
    assert transport.writes == [HEAD + b"{", HEAD]


def test_closing_sends_a_held_head_first() -> None:
    transport = Transport()
    out = OneWriteResponse(transport)  # type: ignore[arg-type]
    out.write(HEAD)
    assert not out.is_closing()  # the connection's own state
    out.close()
    assert transport.writes == [HEAD] and transport.closed and out.is_closing()
