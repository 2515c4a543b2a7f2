"""logs and http.request_id: JSON lines with the request id and the access log's fields; the text format as before
plus the request id; a client's X-Request-ID kept only when short, plain and not token-shaped."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mistral_gateway.http.accesslog import AccessLog
from mistral_gateway.http.app import FrontDoor
from mistral_gateway.http.request_id import request_id
from mistral_gateway.logs import JsonFormatter, RequestIdFilter, TextFormatter

SECRET = "at_S3cr3tT0kenValue_abcdefghijklmnopqrstuvw"
GENERATED = re.compile(r"[0-9a-f]{16}")


@pytest.mark.parametrize("sent", ["abc-123", "a" * 128, "req.1:2_3-4", "0b1e43c2-6f0e-4a57-9b0c-5d2f3a1b7c9e"])
def test_plain_ids_are_kept(sent: str) -> None:
    assert request_id([(b"accept", b"*/*"), (b"x-request-id", sent.encode())]) == sent


@pytest.mark.parametrize("sent", [b"", b"a" * 129, b"has space", b"new\nline", b"semi;colon", "é".encode(),
                                  SECRET.encode(), b"Zk9Qb2x5Z2xvdDEyMzQ1Njc4OTBhYmNkZWY"])
def test_other_ids_are_replaced(sent: bytes) -> None:
    assert GENERATED.fullmatch(request_id([(b"x-request-id", sent)]))


def test_without_a_header_each_request_gets_its_own() -> None:
    ids = {request_id([]) for _ in range(100)}
    assert len(ids) == 100 and all(GENERATED.fullmatch(i) for i in ids)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The access logger and one service logger writing through a JSON and a text handler."""
    json_out, text_out = io.StringIO(), io.StringIO()
    handlers = []
    for out, formatter in ((json_out, JsonFormatter()), (text_out, TextFormatter())):
        handler = logging.StreamHandler(out)
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        handlers.append(handler)
    loggers = [logging.getLogger("mistral_gateway.access"), logging.getLogger("mistral_gateway.test_service")]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        for handler in handlers:
            logger.addHandler(handler)
    yield json_out, text_out
    for logger in loggers:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


async def _working(_: Request) -> Response:
    logging.getLogger("mistral_gateway.test_service").warning("working on it")
    return PlainTextResponse("ok")


def _request(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "GET", "path": "/ready", "query_string": f"api_token={SECRET}".encode(),
             "headers": headers, "client": ("10.1.2.3", 5555)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # no API path is asked for: the front door needs no endpoints
    app = AccessLog(FrontDoor(Starlette(routes=[Route("/ready", _working)]), None, None))  # type: ignore[arg-type]
    asyncio.run(app(scope, receive, send))
    return sent


def test_every_line_of_a_request_carries_its_id(captured: tuple[io.StringIO, io.StringIO]) -> None:
    json_out, text_out = captured
    sent = _request([(b"authorization", f"Bearer {SECRET}".encode()), (b"x-request-id", b"client-7")])
    assert (b"x-request-id", b"client-7") in sent[0]["headers"]
    service, access = (json.loads(line) for line in json_out.getvalue().splitlines())
    assert service["request_id"] == access["request_id"] == "client-7"
    assert service["level"] == "WARNING" and service["logger"] == "mistral_gateway.test_service"
    assert service["message"] == "working on it" and isinstance(service["pid"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", service["time"])
    assert {k: access[k] for k in ("client", "method", "path", "status")} == {
        "client": "10.1.2.3", "method": "GET", "path": "/ready?api_token=***", "status": 200}
    assert access["duration_ms"] >= 0
    text = text_out.getvalue().splitlines()
    assert text[0].endswith("mistral_gateway.test_service: working on it request_id=client-7")
    assert '10.1.2.3 "GET /ready?api_token=***" 200' in text[1] and text[1].endswith(" request_id=client-7")
    assert SECRET not in json_out.getvalue() + text_out.getvalue()


def test_a_generated_id_is_echoed_and_logged(captured: tuple[io.StringIO, io.StringIO]) -> None:
    json_out, _ = captured
    sent = _request([(b"x-request-id", SECRET.encode())])  # token-shaped: replaced, never echoed or logged
    echoed = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert GENERATED.fullmatch(echoed)
    assert {json.loads(line)["request_id"] for line in json_out.getvalue().splitlines()} == {echoed}
    assert SECRET not in json_out.getvalue()


def test_lines_outside_a_request_have_no_id(captured: tuple[io.StringIO, io.StringIO]) -> None:
    json_out, text_out = captured
    logging.getLogger("mistral_gateway.test_service").info("starting")
    assert "request_id" not in json.loads(json_out.getvalue())
    assert text_out.getvalue().rstrip().endswith("mistral_gateway.test_service: starting")
