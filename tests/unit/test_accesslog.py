"""http.accesslog: the access log never contains a token or a URL signature."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.datastructures import QueryParams

from mistral_gateway.http.accesslog import AccessLog, redact_path, redact_query

SECRET = "at_S3cr3tT0kenValue_abcdefghijklmnopqrstuvw"


@pytest.mark.parametrize(("query", "expected"), [
    (f"api_token={SECRET}", "api_token=***"),
    (f"page=2&api_token={SECRET}&page_size=5", "page=2&api_token=***&page_size=5"),
    (f"api_token={SECRET}&file_id=abc", "api_token=***&file_id=abc"),
    (f"API_TOKEN={SECRET}", "API_TOKEN=***"),
    (f"Api_Token={SECRET}&x=1", "Api_Token=***&x=1"),
    (f"token={SECRET}", "token=***"),
    ("ws=w1&expires=1700000000&signature=AbC-_dEf", "ws=w1&expires=1700000000&signature=***"),
    (f"api_token={SECRET}&api_token={SECRET}", "api_token=***&api_token=***"),
    ("api_token=", "api_token=***"),
    ("page=1&search=token", "page=1&search=token"),
    ("my_api_token=visible", "my_api_token=***"),  # a name containing a secret word is enough
    ("tokens=1&xsignature=2", "token=***&xsignature=***"),
    ("x-api-key=abc&page=1", "x-api-key=***&page=1"),
    ("file_id=0b1e43c2-6f0e-4a57-9b0c-5d2f3a1b7c9e&ws=0123456789abcdef0123456789abcdef",
     "file_id=0b1e43c2-6f0e-4a57-9b0c-5d2f3a1b7c9e&ws=0123456789abcdef0123456789abcdef"),  # ids stay readable
    ("", ""),
])
def test_redact_query(query: str, expected: str) -> None:
    assert redact_query(query) == expected


@pytest.mark.parametrize("query", [
    f"api%5Ftoken={SECRET}",
    f"api%5ftoken={SECRET}&page=1",
    f"page=1&%61pi_token={SECRET}",
    f"sig%6Eature={SECRET}",
])
def test_percent_encoded_names_are_redacted_too(query: str) -> None:
    """Starlette decodes parameter names, so ``api%5Ftoken`` authenticates: it must not reach the log either."""
    decoded = QueryParams(query)
    assert SECRET in decoded.values()  # the server would read this as the token (or signature)
    assert SECRET not in redact_query(query)


def test_values_containing_other_names_are_kept() -> None:
    assert redact_query("search=api_token=abc") == "search=api_token=abc"


@pytest.mark.parametrize("query", [
    f"api_token%3D{SECRET}",  # the malformed names: the server ignores them, the log must too
    f"api_token%20={SECRET}",
    f"api_token+={SECRET}",
    f"page=1&api_token%3D{SECRET}&x=2",
    f"q={SECRET}",  # token-shaped whatever the key
    f"q=prefix%20{SECRET}%20suffix",
    f"x=1%26api_token%3D{SECRET}",  # an encoded '&' inside a value
    f"{SECRET}",  # a bare value
    f"{SECRET}=1",
    "x=" + SECRET.replace("_", "%5F"),
    "key=aB3dE5gH7jK9mN1pQ3sT5vW7yZ9",  # someone else's credential (an upstream key)
    "q=aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC",  # long, mixed case and digits: high entropy, whatever the name
])
def test_token_shaped_values_are_redacted_whatever_the_key(query: str) -> None:
    redacted = redact_query(query)
    assert SECRET not in redacted and "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9" not in redacted
    assert "S3cr3tT0ken" not in redacted and "***" in redacted


def test_malformed_names_keep_the_name_only() -> None:
    assert redact_query(f"page=1&api_token%3D{SECRET}&x=2") == "page=1&api_token=***&x=2"
    assert redact_query(f"api_token%20={SECRET}") == "api_token=***"


def test_tokens_in_the_path_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mistral_gateway.access")
    _call(_ok_app, b"", path=f"/mistralai/v1/models/{SECRET}")
    line = caplog.records[-1].getMessage()
    assert SECRET not in line and "S3cr3t" not in line
    assert '"GET /mistralai/v1/models/*** " 204' not in line and "/mistralai/v1/models/***" in line


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _failing_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("boom")


def _call(app: Any, query: bytes, path: str = "/mistralai/v1/files") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": [],
             "client": ("10.1.2.3", 5555)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(AccessLog(app)(scope, receive, send))
    return sent


def test_middleware_logs_redacted_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mistral_gateway.access")
    sent = _call(_ok_app, f"api_token={SECRET}&page=1".encode())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    records = [r for r in caplog.records if r.name == "mistral_gateway.access"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert SECRET not in line
    assert '10.1.2.3 "GET /mistralai/v1/files?api_token=***&page=1" 204' in line
    assert line.endswith("ms")


def test_middleware_logs_path_without_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mistral_gateway.access")
    _call(_ok_app, b"", path="/health")
    assert '"GET /health" 204' in caplog.records[-1].getMessage()


def test_middleware_logs_500_when_the_app_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mistral_gateway.access")
    with pytest.raises(RuntimeError):
        _call(_failing_app, f"api_token={SECRET}".encode())
    line = caplog.records[-1].getMessage()
    assert '"GET /mistralai/v1/files?api_token=***" 500' in line
    assert SECRET not in line


def test_middleware_silent_below_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mistral_gateway.access")
    sent = _call(_ok_app, b"x=1")
    assert sent[0]["status"] == 204
    assert [r for r in caplog.records if r.name == "mistral_gateway.access"] == []


def test_non_http_scopes_pass_through(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mistral_gateway.access")
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def noop(*_: Any) -> Any:
        return {}

    asyncio.run(AccessLog(app)({"type": "lifespan"}, noop, noop))
    assert seen == ["lifespan"]
    assert [r for r in caplog.records if r.name == "mistral_gateway.access"] == []


def test_decoded_control_characters_cannot_forge_lines() -> None:
    assert "\n" not in redact_query("api_token%0AFORGED=1") and "\n" not in redact_path("/v1/x\nFORGED")
    assert redact_path("/v1/a b") == "/v1/a%20b"
