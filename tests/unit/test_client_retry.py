"""Client retries and typed errors against httpx.MockTransport: which answers are retried, how long it waits."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mistral_gateway.client import (
    ApiConnectionError,
    ApiError,
    AsyncClient,
    AuthenticationError,
    Client,
    NotFoundError,
    NotImplementedOperationError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    ValidationError,
)
from mistral_gateway.client.errors import error_for, parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]

FILE = {"id": "f1", "object": "file", "bytes": 3, "created_at": 1, "filename": "a.jsonl", "purpose": "fine-tune",
        "sample_type": "instruct", "source": "upload"}
CHAT = {"id": "c1", "object": "chat.completion", "model": "m", "created": 1,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
MESSAGES = [{"role": "user", "content": "hello"}]


def lowcode_error(status: int, code: str, message: str = "nope", headers: dict[str, str] | None = None
                  ) -> httpx.Response:
    return httpx.Response(status, json={"data": {"error": {"message": message, "code": code}}}, headers=headers)


def scripted(*answers: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """A handler replaying ``answers`` in order (the last one repeats), recording the requests it saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return handler, seen


def make_client(tmp_path: Path, handler: Handler, **kw: object) -> tuple[Client, list[float]]:
    policy = kw.pop("retry", RetryPolicy(max_retries=3, backoff=0.5, max_backoff=4.0, jitter=lambda a, b: b))
    client = Client("http://gw.test", "tok", transport=httpx.MockTransport(handler), cache_path=tmp_path / "f.json",
                    retry=policy, **kw)  # type: ignore[arg-type]
    sleeps: list[float] = []
    client._transport.sleep = sleeps.append  # record the waits instead of waiting
    return client, sleeps


def test_429_is_retried_for_post_honouring_retry_after(tmp_path: Path) -> None:
    handler, seen = scripted(lowcode_error(429, "RATE_LIMITED", headers={"Retry-After": "2"}),
                             httpx.Response(200, json={"data": CHAT}))
    client, sleeps = make_client(tmp_path, handler)
    reply = client.chat.complete(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "hi"
    assert [r.method for r in seen] == ["POST", "POST"]
    assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 2.3  # the server's figure plus a little jitter


def test_503_is_not_retried_for_post(tmp_path: Path) -> None:
    handler, seen = scripted(lowcode_error(503, "MODEL_BUSY", headers={"Retry-After": "1"}))
    client, sleeps = make_client(tmp_path, handler)
    with pytest.raises(ServiceUnavailableError) as info:
        client.chat.complete(model="m", messages=MESSAGES)
    assert len(seen) == 1 and sleeps == []
    assert (info.value.status, info.value.code, info.value.retry_after) == (503, "MODEL_BUSY", 1.0)
    assert isinstance(info.value, ServerError)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_for_get_with_exponential_backoff(tmp_path: Path, status: int) -> None:
    handler, seen = scripted(httpx.Response(status, text="bad gateway"), httpx.Response(status, text="again"),
                             httpx.Response(200, json={"data": {"object": "list", "data": [FILE], "total": 1}}))
    client, sleeps = make_client(tmp_path, handler)
    assert client.files.list().total == 1
    assert len(seen) == 3
    assert sleeps == [0.5, 1.0]  # backoff * 2**attempt (jitter pinned to its maximum here)


def test_retries_stop_after_max_retries_and_raise_the_last_error(tmp_path: Path) -> None:
    handler, seen = scripted(lowcode_error(503, "SERVICE_UNAVAILABLE"))
    client, sleeps = make_client(tmp_path, handler, retry=RetryPolicy(max_retries=2, backoff=1, max_backoff=1.5,
                                                                      jitter=lambda a, b: b))
    with pytest.raises(ServiceUnavailableError):
        client.files.list()
    assert len(seen) == 3 and sleeps == [1.0, 1.5]  # capped by max_backoff


def test_a_retry_after_beyond_the_limit_is_not_waited_for(tmp_path: Path) -> None:
    handler, seen = scripted(lowcode_error(429, "RATE_LIMITED", headers={"Retry-After": "3600"}))
    client, sleeps = make_client(tmp_path, handler)
    with pytest.raises(RateLimitError) as info:
        client.files.list()
    assert len(seen) == 1 and sleeps == []
    assert info.value.retry_after == 3600.0


def test_jitter_spreads_backoff_within_half_to_full() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0)
    delays = [policy.backoff_delay(2) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # actually random


def test_connection_refused_is_retried_then_raised_as_api_connection_error(tmp_path: Path) -> None:
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    client, sleeps = make_client(tmp_path, refuse)
    with pytest.raises(ApiConnectionError) as info:
        client.chat.complete(model="m", messages=MESSAGES)  # nothing was sent: safe even for POST
    assert len(attempts) == 4 and len(sleeps) == 3
    assert "tok" not in str(info.value)  # the URL (with ?api_token=) never appears in messages


def test_a_read_error_on_post_is_not_retried(tmp_path: Path) -> None:
    attempts: list[httpx.Request] = []

    def drop(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ReadError("connection reset", request=request)

    client, _ = make_client(tmp_path, drop)
    with pytest.raises(ApiConnectionError):
        client.chat.complete(model="m", messages=MESSAGES)
    assert len(attempts) == 1


@pytest.mark.parametrize(("status", "code", "cls"), [
    (401, "TOKEN_REVOKED", AuthenticationError),
    (403, "MISSING_SCOPE", PermissionDeniedError),
    (404, "FILE_NOT_FOUND", NotFoundError),
    (501, "OPERATION_NOT_IMPLEMENTED", NotImplementedOperationError),
])
def test_errors_are_typed_with_status_code_and_message(tmp_path: Path, status: int, code: str,
                                                       cls: type[ApiError]) -> None:
    handler, seen = scripted(lowcode_error(status, code, message=f"said {status}"))
    client, sleeps = make_client(tmp_path, handler)
    with pytest.raises(cls) as info:
        client.files.retrieve("f1")
    assert (info.value.status, info.value.code, info.value.message) == (status, code, f"said {status}")
    assert len(seen) == 1 and sleeps == []


def test_error_bodies_in_other_shapes() -> None:
    detail = [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]
    err = error_for(422, b'{"data":{"error":{"message":"body.model: Field required","code":"VALIDATION_ERROR",'
                         b'"detail":' + str(detail).replace("'", '"').encode() + b"}}}")
    assert isinstance(err, ValidationError) and err.detail == detail
    native = error_for(404, b'{"object":"error","message":"gone","type":"x","param":null,"code":"FILE_NOT_FOUND"}')
    assert isinstance(native, NotFoundError) and (native.code, native.message) == ("FILE_NOT_FOUND", "gone")
    html = error_for(502, b"<html>Bad Gateway</html>")
    assert isinstance(html, ServerError) and html.status == 502 and "Bad Gateway" in html.message
    assert error_for(418, b"").message == "HTTP 418"


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(when) or 0) <= 31
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_async_client_retries_429_too(tmp_path: Path) -> None:
    handler, seen = scripted(lowcode_error(429, "RATE_LIMITED", headers={"Retry-After": "0"}),
                             httpx.Response(200, json={"data": CHAT}))
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    async def main() -> str | None:
        async with AsyncClient("http://gw.test", "tok", transport=httpx.MockTransport(handler),
                               cache_path=tmp_path / "f.json") as client:
            client._transport.sleep = record
            reply = await client.chat.complete(model="m", messages=MESSAGES)
            return reply.choices[0].message.content

    assert asyncio.run(main()) == "hi"
    assert len(seen) == 2 and len(sleeps) == 1 and sleeps[0] < 0.2
