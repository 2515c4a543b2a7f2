"""http.dialects: where each dialect finds the token, and how it shapes bodies and errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mistral_gateway.errors import NotFound, RateLimited, ValidationFailed
from mistral_gateway.http.dialects import LOWCODE, NATIVE

DETAIL = [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]


@pytest.mark.parametrize(("headers", "expected"), [
    ({"authorization": "Bearer at_abc"}, "at_abc"),
    ({"authorization": "bearer   at_abc  "}, "at_abc"),
    ({"authorization": "BEARER at_abc"}, "at_abc"),
    ({"authorization": "Basic dXNlcjpwYXNz"}, None),
    ({"authorization": "Bearer "}, None),
    ({"authorization": "at_abc"}, None),
    ({"x-api-key": "at_key"}, "at_key"),
    ({"authorization": "Basic x", "x-api-key": "at_key"}, None),  # a present Authorization header decides
    ({}, None),
])
def test_native_credentials(make_request: Any, headers: dict[str, str], expected: str | None) -> None:
    assert NATIVE.credentials(make_request(headers=headers, method="GET")) == expected


def test_native_ignores_query_token(make_request: Any) -> None:
    assert NATIVE.credentials(make_request(query="api_token=at_q", method="GET")) is None


@pytest.mark.parametrize(("query", "headers", "expected"), [
    ("api_token=at_q", {}, "at_q"),
    ("", {"x-api-token": "at_h"}, "at_h"),
    ("api_token=at_q", {"x-api-token": "at_h"}, "at_q"),
    ("api_token=", {"x-api-token": "at_h"}, "at_h"),
    ("", {"authorization": "Bearer at_b"}, None),
    ("", {}, None),
])
def test_lowcode_credentials(make_request: Any, query: str, headers: dict[str, str], expected: str | None) -> None:
    assert LOWCODE.credentials(make_request(query=query, headers=headers, method="GET")) == expected


def test_wrap() -> None:
    assert NATIVE.wrap(b'{"a":1}') == b'{"a":1}'
    assert orjson.loads(LOWCODE.wrap(b'{"a":1}')) == {"data": {"a": 1}}
    assert orjson.loads(LOWCODE.wrap(b"[1,2]")) == {"data": [1, 2]}
    assert orjson.loads(LOWCODE.wrap(b"null")) == {"data": None}


def test_native_error_body() -> None:
    err = NotFound("file 'x' not found", code="FILE_NOT_FOUND", param="file_id")
    assert NATIVE.error_body(err) == {"object": "error", "message": "file 'x' not found",
                                      "type": "invalid_request_error", "param": "file_id", "code": "FILE_NOT_FOUND"}
    assert NATIVE.error_body(ValidationFailed(DETAIL)) == {"detail": DETAIL}


def test_lowcode_error_body() -> None:
    err = NotFound("nope", code="FILE_NOT_FOUND", param="file_id")
    assert LOWCODE.error_body(err) == {"data": {"error": {"message": "nope", "code": "FILE_NOT_FOUND",
                                                         "param": "file_id"}}}
    assert LOWCODE.error_body(NotFound("nope")) == {"data": {"error": {"message": "nope", "code": "NOT_FOUND"}}}
    body = LOWCODE.error_body(ValidationFailed(DETAIL))
    assert body["data"]["error"]["detail"] == DETAIL
    assert body["data"]["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("dialect", [NATIVE, LOWCODE])
def test_error_response(dialect: Any) -> None:
    response = dialect.error_response(RateLimited("slow", retry_after=3))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.media_type == "application/json"
    assert orjson.loads(response.body) == dialect.error_body(RateLimited("slow", retry_after=3))


def test_json_response() -> None:
    r = LOWCODE.json_response(b'{"id":"x"}', 201, headers={"X-A": "1"})
    assert r.status_code == 201
    assert r.headers["x-a"] == "1"
    assert orjson.loads(r.body) == {"data": {"id": "x"}}
    assert NATIVE.json_response(b'{"id":"x"}').body == b'{"id":"x"}'
