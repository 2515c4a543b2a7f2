"""The baseline: a bare Starlette app serving fixed bytes, run by uvicorn exactly as ``mistral-gateway serve`` is.

    python bench/bare_app.py --port 8123 --route /v1/models=/tmp/body.json [--route PATH=FILE ...]

Each ``--route`` serves the file's bytes as ``application/json`` with Starlette's ``Response`` (what the gateway's
dialects use), so the difference to the gateway is everything the gateway does per request, nothing else.
``/health`` answers for the readiness probe.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["build_app", "main"]


def _fixed(body: bytes) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_: Request) -> Response:
        return Response(body, media_type="application/json")

    return endpoint


def build_app(bodies: dict[str, bytes]) -> Starlette:
    routes = [Route(path, _fixed(body), methods=["GET"]) for path, body in bodies.items()]
    routes.append(Route("/health", _fixed(b'{"status":"ok"}'), methods=["GET"]))
    return Starlette(routes=routes)


def _route(spec: str) -> tuple[str, bytes]:
    path, sep, file = spec.partition("=")
    if not sep or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected PATH=FILE, got {spec!r}")
    return path, Path(file).read_bytes()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--route", type=_route, action="append", required=True, metavar="PATH=FILE")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    # Same call as mistral_gateway.cli.server: one worker, loop/http "auto" (uvloop + httptools when installed),
    # uvicorn's access log off.
    uvicorn.run(build_app(dict(args.route)), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
