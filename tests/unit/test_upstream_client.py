"""The upstream client on real loopback sockets: what it sends, how failures map, streaming, timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from mistral_gateway.config import UpstreamEntry
from mistral_gateway.errors import BadGateway, GatewayTimeout
from mistral_gateway.security.netcheck import is_private_address
from mistral_gateway.upstreams.client import Unreachable, UpstreamClient, UpstreamTimeout
from support import free_port


def up(base_url: str, **kw: Any) -> UpstreamClient:
    return UpstreamClient(UpstreamEntry(name="u", kind="mistral-gateway", base_url=base_url,
                                        allow_private_network=kw.pop("allow", True), **kw), api_key="sk-test")


async def serving(routes: list[web.RouteDef], body: Callable[[str], Awaitable[Any]]) -> Any:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await body(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def test_sends_key_json_and_query_and_keeps_redirects() -> None:
    seen: dict[str, Any] = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(auth=request.headers.get("Authorization"), ctype=request.headers.get("Content-Type"),
                    query=list(request.query.items()), body=await request.json(), path=request.path)
        return web.json_response({"ok": True}, status=201)

    async def moved(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://example.com/steal"})

    async def body(base: str) -> None:
        client = up(base)
        exchange = await client.open("POST", "/v1/echo", params=[("a", "1"), ("a", "2")], json={"x": 1})
        assert exchange.status == 201 and await exchange.read() == b'{"ok": true}'
        redirect = await client.open("GET", "/v1/moved")
        assert redirect.status == 302  # never followed: the key must not travel elsewhere
        redirect.close()
        await client.aclose()

    asyncio.run(serving([web.post("/v1/echo", echo), web.get("/v1/moved", moved)], body))
    assert seen == {"auth": "Bearer sk-test", "ctype": "application/json", "query": [("a", "1"), ("a", "2")],
                    "body": {"x": 1}, "path": "/v1/echo"}


def test_connection_refused_is_unreachable() -> None:
    async def go() -> None:
        client = up(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(Unreachable, match="unreachable"):
            await client.open("GET", "/v1/models")
        await client.aclose()

    asyncio.run(go())


def test_no_headers_in_time_is_a_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        async def go() -> float:
            client = up(f"http://127.0.0.1:{port}", read_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await client.open("GET", "/v1/models")
            await client.aclose()
            return time.monotonic() - started

        assert asyncio.run(go()) < 5


def _streaming(pieces: list[bytes], *, delay: float = 0.0, abort: bool = False) -> web.RouteDef:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(delay)
        if abort:
            assert request.transport is not None
            request.transport.abort()  # the connection drops mid-stream
            return response
        await response.write_eof()
        return response

    return web.get("/v1/stream", handler)


async def _collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [c async for c in chunks]


def test_stream_chunks_arrive_as_sent() -> None:
    pieces = [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]

    async def body(base: str) -> None:
        client = up(base)
        exchange = await client.open("GET", "/v1/stream")
        arrivals = []
        async for chunk in exchange.chunks():
            arrivals.append((time.monotonic(), chunk))
        assert b"".join(c for _, c in arrivals) == b"".join(pieces)
        assert arrivals[-1][0] - arrivals[0][0] > 0.15  # relayed as they came, not buffered to the end
        await client.aclose()

    asyncio.run(serving([_streaming(pieces, delay=0.1)], body))


def test_a_dropped_stream_is_a_bad_gateway() -> None:
    async def body(base: str) -> None:
        client = up(base)
        exchange = await client.open("GET", "/v1/stream")
        with pytest.raises(BadGateway, match="broke off"):
            await _collect(exchange.chunks())
        await client.aclose()

    asyncio.run(serving([_streaming([b"data: 1\n\n"], delay=0.05, abort=True)], body))


def test_total_timeout_mid_stream() -> None:
    async def body(base: str) -> None:
        client = up(base, total_timeout=0.2)
        exchange = await client.open("GET", "/v1/stream")
        with pytest.raises(GatewayTimeout, match="total timeout"):
            await _collect(exchange.chunks())
        await client.aclose()

    asyncio.run(serving([_streaming([b"data: x\n\n"] * 20, delay=0.05)], body))


def test_one_client_serves_several_event_loops() -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.json_response({})

    client = up("http://127.0.0.1:1")  # the base URL is swapped per server below

    async def body(base: str) -> int:
        client.base_url = base
        exchange = await client.open("GET", "/v1/ok")
        await exchange.read()
        return exchange.status

    assert asyncio.run(serving([web.get("/v1/ok", ok)], body)) == 200
    assert asyncio.run(serving([web.get("/v1/ok", ok)], body)) == 200  # a new loop gets a new session


def test_a_name_resolving_to_a_private_address_is_refused_when_used() -> None:
    host = socket.gethostname()  # a name /etc/hosts maps to this machine's own (private) address
    try:
        addresses = {i[4][0] for i in socket.getaddrinfo(host, 1)}
    except OSError:
        pytest.skip("the host name does not resolve here")
    if not all(is_private_address(str(a)) for a in addresses):
        pytest.skip("the host name resolves to a public address here")

    async def go() -> None:
        client = up(f"http://{host}:{free_port()}", allow=False)
        with pytest.raises(BadGateway, match="private or loopback") as info:
            await client.open("GET", "/v1/models")
        assert info.value.code == "UPSTREAM_ADDRESS_REFUSED"
        await client.aclose()

    asyncio.run(go())
