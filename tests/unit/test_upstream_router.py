"""The router's fallback rules, with upstreams faked behind the client's interface (unit level: the client itself
is tested on real sockets in test_upstream_client.py, the whole path against real servers in
tests/e2e/test_upstreams.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from mistral_gateway.config import ModelEntry, Settings, UpstreamEntry
from mistral_gateway.errors import BadGateway, ServiceUnavailable, UpstreamError
from mistral_gateway.registry import Registry
from mistral_gateway.upstreams import Relayed, RelayedStream, Router, UpstreamClient, build_upstreams
from mistral_gateway.upstreams.client import Unreachable, UpstreamTimeout

_REGISTRY = Registry.load()
CHAT = _REGISTRY.get("create_chat_completions")
FIM = _REGISTRY.get("create_fim_completions")


class Meter:
    model: str | None = None
    backend = "local"
    prompt_tokens = 0
    completion_tokens = 0


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "unknown_field": 1}
OK = {"id": "x", "object": "chat.completion", "model": "up", "created": 1, "choices": [],
      "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


class FakeExchange:
    def __init__(self, status: int, body: Any = None, *, chunks: list[Any] | None = None) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self.deadline = float("inf")
        self._body = orjson.dumps(body) if body is not None else b""
        self._chunks = chunks or []
        self.closed = False

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    def close(self) -> None:
        self.closed = True


class FakeUpstream(UpstreamClient):
    """The real client's naming and path rules; ``open`` answers from ``handler`` instead of the network."""

    def __init__(self, name: str, handler: Callable[..., FakeExchange], kind: str = "mistral", **kw: Any) -> None:
        super().__init__(UpstreamEntry(name=name, kind=kind, base_url=f"http://{name}.test",
                                       allow_private_network=True, **kw), api_key="sk-" + name)
        self.handler = handler
        self.sent: list[tuple[str, str, Any]] = []

    async def open(self, method: str, native_path: str, *, json: Any = None, **_: Any) -> Any:  # type: ignore[override]
        self.sent.append((method, self.path(native_path), json))
        return self.handler()


def client(name: str, handler: Callable[..., FakeExchange], kind: str = "mistral", **kw: Any) -> FakeUpstream:
    return FakeUpstream(name, handler, kind, **kw)


def entry(*upstreams: str) -> ModelEntry:
    return ModelEntry(id="m", routes=[{"upstream": u, "model": f"{u}-model"} for u in upstreams])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_native_kind_gets_the_body_unchanged_but_the_model() -> None:
    a = client("a", lambda: FakeExchange(200, OK))
    meter = Meter()
    result = run(Router({"a": a}).forward(CHAT, entry("a"), BODY, stream=False, usage=meter, local=_no_local))
    assert isinstance(result, Relayed) and orjson.loads(result.body) == OK
    assert a.sent == [("POST", "/v1/chat/completions", {**BODY, "model": "a-model"})]  # unknown fields kept
    assert (meter.backend, meter.model, meter.prompt_tokens, meter.completion_tokens) == ("a", "m", 3, 4)


async def _no_local(model: str | None = None) -> Any:
    raise AssertionError("local must not be called")


@pytest.mark.parametrize("failure", ["connect", "timeout", 429, 500, 503])
def test_fallback_to_the_next_target(failure: Any) -> None:
    def first() -> FakeExchange:
        if failure == "connect":
            raise Unreachable("upstream 'a' is unreachable: refused")
        if failure == "timeout":
            raise UpstreamTimeout("upstream 'a' timed out before answering")
        return FakeExchange(failure, {"object": "error", "message": "busy", "code": "x"})

    b = client("b", lambda: FakeExchange(200, OK))
    meter = Meter()
    result = run(Router({"a": client("a", first), "b": b}).forward(CHAT, entry("a", "b"), BODY, stream=False,
                                                                 usage=meter, local=_no_local))
    assert isinstance(result, Relayed) and meter.backend == "b" and len(b.sent) == 1


def test_client_errors_do_not_fall_back() -> None:
    bad = {"object": "error", "message": "bad model", "type": "invalid_request_error", "param": "model",
           "code": "1500"}
    b = client("b", lambda: FakeExchange(200, OK))
    router = Router({"a": client("a", lambda: FakeExchange(400, bad)), "b": b})
    with pytest.raises(UpstreamError) as info:
        run(router.forward(CHAT, entry("a", "b"), BODY, stream=False, usage=Meter(), local=_no_local))
    assert (info.value.status, info.value.message, info.value.code, info.value.param) == (400, "bad model", "1500",
                                                                                         "model")
    assert b.sent == []


def test_fallback_statuses_are_configurable() -> None:
    a = client("a", lambda: FakeExchange(503, {"message": "down"}), fallback_statuses=[])
    router = Router({"a": a, "b": client("b", lambda: FakeExchange(200, OK))})
    with pytest.raises(UpstreamError) as info:
        run(router.forward(CHAT, entry("a", "b"), BODY, stream=False, usage=Meter(), local=_no_local))
    assert info.value.status == 503


def test_the_last_target_answers_with_its_own_error() -> None:
    router = Router({"a": client("a", lambda: FakeExchange(503, {"message": "down"}))})
    with pytest.raises(UpstreamError) as info:
        run(router.forward(CHAT, entry("a"), BODY, stream=False, usage=Meter(), local=_no_local))
    assert (info.value.status, info.value.message) == (503, "down")


def test_last_target_failure_names_every_attempt() -> None:
    def refuse(name: str) -> Callable[[], FakeExchange]:
        def fail() -> FakeExchange:
            raise Unreachable(f"upstream {name!r} is unreachable: refused")
        return fail

    router = Router({"a": client("a", refuse("a")), "b": client("b", refuse("b"))})
    with pytest.raises(Unreachable) as info:
        run(router.forward(CHAT, entry("a", "b"), BODY, stream=False, usage=Meter(), local=_no_local))
    assert "'a'" in info.value.message and "'b'" in info.value.message and info.value.status == 502


def test_local_target_and_busy_local_falls_back() -> None:
    async def busy(model: str | None = None) -> Any:
        raise ServiceUnavailable("all slots busy", retry_after=1)

    async def fine(model: str | None = None) -> str:
        return f"local result from {model}"

    router = Router({"a": client("a", lambda: FakeExchange(200, OK))})
    e = ModelEntry(id="m", routes=[{"upstream": "local", "model": "other"}, {"upstream": "a"}])
    assert run(router.forward(CHAT, e, BODY, stream=False, usage=Meter(), local=fine)) == "local result from other"
    assert isinstance(run(router.forward(CHAT, e, BODY, stream=False, usage=Meter(), local=busy)), Relayed)


def test_no_fallback_once_a_stream_has_started() -> None:
    first_event = b'data: {"id": "1", "choices": []}\n\n'
    broken = FakeExchange(200, chunks=[first_event, BadGateway("upstream 'a' broke off its stream: ReadError")])
    b = client("b", lambda: FakeExchange(200, OK))
    router = Router({"a": client("a", lambda: broken), "b": b})
    result = run(router.forward(CHAT, entry("a", "b"), {**BODY, "stream": True}, stream=True, usage=Meter(),
                                local=_no_local))
    assert isinstance(result, RelayedStream)

    async def drain() -> list[bytes]:
        got = []
        with pytest.raises(BadGateway):
            async for chunk in result.chunks:
                got.append(chunk)
        return got

    assert run(drain()) == [first_event]
    assert b.sent == []


def test_stream_usage_is_read_from_the_last_events() -> None:
    events = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
              b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\ndata: [DONE]\n\n']
    meter = Meter()
    router = Router({"a": client("a", lambda: FakeExchange(200, chunks=events))})
    result = run(router.forward(CHAT, entry("a"), BODY, stream=True, usage=meter, local=_no_local))

    async def drain() -> bytes:
        return b"".join([c async for c in result.chunks])

    assert run(drain()) == b"".join(events)  # byte for byte
    assert (meter.prompt_tokens, meter.completion_tokens, meter.backend) == (5, 2, "a")


def test_openai_kind_is_translated_both_ways() -> None:
    answer = {"id": "c1", "choices": [{"index": 0, "text": "mid", "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}
    o = client("o", lambda: FakeExchange(200, answer), kind="openai")
    result = run(Router({"o": o}).forward(FIM, ModelEntry(id="m", routes=[{"upstream": "o", "model": "up"}]),
                                          {"model": "m", "prompt": "p", "suffix": "s", "random_seed": 4},
                                          stream=False, usage=Meter(), local=_no_local))
    assert o.sent == [("POST", "/completions", {"model": "up", "prompt": "p", "suffix": "s", "seed": 4})]
    body = orjson.loads(result.body)
    assert body["model"] == "m" and body["choices"][0]["message"]["content"] == "mid"


def test_base_url_conventions() -> None:
    oa = UpstreamClient(UpstreamEntry(name="o", kind="openai", base_url="http://o.test/v1",
                                      allow_private_network=True))
    assert oa.path("/v1/chat/completions") == "/chat/completions" and oa.base_url == "http://o.test/v1"
    native = UpstreamEntry(name="n", kind="mistral-gateway", base_url="http://n.test/v1/", allow_private_network=True)
    assert UpstreamClient(native).base_url == "http://n.test"
    assert UpstreamClient(native).path("/v1/files") == "/v1/files"


def test_mistral_kind_defaults_to_the_public_api_and_checks_private_addresses() -> None:
    # names are resolved when first used, so an offline start with a cloud upstream configured still works
    assert UpstreamClient(UpstreamEntry(name="m", kind="mistral"), api_key="k").base_url == "https://api.mistral.ai"
    with pytest.raises(ValueError, match="private or loopback"):
        UpstreamClient(UpstreamEntry(name="p", kind="mistral-gateway", base_url="http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="needs a base_url"):
        UpstreamClient(UpstreamEntry(name="p", kind="openai", allow_private_network=True))


def test_configuration_errors_are_caught_at_start() -> None:
    up = {"name": "u", "kind": "openai", "base_url": "http://127.0.0.1:1/v1", "allow_private_network": True}
    with pytest.raises(ValueError, match="unknown upstream 'nope'"):
        build_upstreams(Settings(upstreams=[up], models=[{"id": "m", "routes": [{"upstream": "nope"}]}]))
    with pytest.raises(ValueError, match="passthrough needs a 'mistral' or 'mistral-gateway'"):
        build_upstreams(Settings(upstreams=[up], workspaces=[{"name": "w", "passthrough": "u"}]))
    with pytest.raises(ValueError, match="declared twice"):
        build_upstreams(Settings(upstreams=[up, up]))
    with pytest.raises(ValueError, match="reserved"):
        build_upstreams(Settings(upstreams=[{**up, "name": "local"}]))


def test_key_from_the_named_environment_variable_only() -> None:
    up = UpstreamEntry(name="u", kind="mistral-gateway", base_url="http://127.0.0.1:1", allow_private_network=True,
                       api_key_env="UP_KEY")
    clients = build_upstreams(Settings(upstreams=[up]), environ={"UP_KEY": "sk-secret"})
    assert clients["u"].has_key
    assert not build_upstreams(Settings(upstreams=[up]), environ={})["u"].has_key


def test_local_fallback_must_name_a_catalog_model() -> None:
    with pytest.raises(ValueError, match="not in the catalog"):
        build_upstreams(Settings(models=[{"id": "m", "routes": [{"upstream": "local", "model": "ghost"}]}]))
