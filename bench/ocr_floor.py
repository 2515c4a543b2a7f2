"""The HTTP floor of the OCR suite: a bare Starlette app, run by uvicorn as ``mistral-gateway serve`` is, whose
``POST /v1/ocr`` does only what any server must: read the JSON body, decode the data URL, call the engine the
gateway's own loader builds (``EngineManager.ocr``, the same models and settings) and write the pages as JSON. No
authentication, validation, metering, usage, metrics or logging: the difference to the gateway's row is what the
gateway does per request, and the difference to the in-process row is what HTTP itself costs on this machine.

    python bench/ocr_floor.py --port 8123 --data-dir DIR
"""

from __future__ import annotations

import argparse
from typing import Any

import direct_args  # a sibling: this file runs as a script
import orjson
import pybase64
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["build_app", "main"]


def build_app(manager: Any, entry: Any) -> Starlette:
    from mistral_gateway.engines.base import OcrOptions

    engines: list[Any] = []

    async def ocr(request: Request) -> Response:
        if not engines:  # loaded by the first request, as the gateway loads it
            engines.append(await manager.ocr(entry))
        document = orjson.loads(await request.body())["document"]
        url = document.get("document_url") or document["image_url"]
        data = pybase64.b64decode(url[url.index(",") + 1:])
        pages = await engines[0].read(data, OcrOptions())
        body = {"pages": [{"index": p.index, "markdown": p.markdown, "images": [],
                           "dimensions": {"dpi": p.dpi, "height": p.height, "width": p.width}} for p in pages],
                "model": entry.id, "usage_info": {"pages_processed": len(pages), "doc_size_bytes": len(data)}}
        return Response(orjson.dumps(body), media_type="application/json")

    async def health(_: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/v1/ocr", ocr, methods=["POST"]), Route("/health", health, methods=["GET"])])


def main() -> None:
    parser: argparse.ArgumentParser = direct_args.parser(__doc__, "mistral-ocr-latest", corpus=False)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    manager, entry = direct_args.resolve(args)
    try:
        # the same call as mistral_gateway.cli.server: loop/http "auto" (uvloop + httptools), no access log
        uvicorn.run(build_app(manager, entry), host="127.0.0.1", port=args.port, log_level="warning",
                    access_log=False)
    finally:
        manager.close()


if __name__ == "__main__":
    main()
