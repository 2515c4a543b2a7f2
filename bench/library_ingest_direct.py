"""The in-process baselines of the library_ingest suite: the gateway's own loaders build the OCR engine
(``mistral-ocr-latest``) and the library embedding model (``mistral-embed``), then each document is

- read by ``OcrEngine.read`` alone (as ingestion asks: every page, no images): its pages per second;
- chunked as ingestion chunks it (``split_chunks`` at ``--chunk-size``; not timed), and its chunks embedded by the
  model alone in ingestion's batches (``EMBED_BATCH``): chunks per second.

Run as its own process; prints one JSON object.

    python bench/library_ingest_direct.py --documents DIR --data-dir DIR [--rounds 1] [--chunk-size 1000]

``DIR`` holds the documents ``suites/library_ingest.py`` wrote and ``cases.json`` (name, file, mime).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import direct_args  # a sibling: this file runs as a script

__all__ = ["main"]


async def _case(ocr: Any, embedder: Any, data: bytes, mime: str, chunk_size: int, rounds: int) -> dict[str, Any]:
    from mistral_gateway.engines.base import OcrOptions
    from mistral_gateway.services.library_ingest import EMBED_BATCH
    from mistral_gateway.services.library_text import DocumentType, extract_text, split_chunks

    async def loader() -> Any:
        return ocr

    extracted = await extract_text(data, DocumentType(mime, None), ocr=loader, max_pages=1000)  # also a warm-up
    texts = [c.text for c in split_chunks(extracted, chunk_size)]
    await embedder.embed(texts[:EMBED_BATCH])  # warm-up
    runs = []
    for _ in range(rounds):
        wall = time.perf_counter()
        pages = await ocr.read(data, OcrOptions(max_pages=1000, image_limit=0))
        ocr_s = time.perf_counter() - wall
        wall = time.perf_counter()
        for start in range(0, len(texts), EMBED_BATCH):
            await embedder.embed(texts[start:start + EMBED_BATCH])
        runs.append({"ocr_s": ocr_s, "embed_s": time.perf_counter() - wall})
    return {"pages": len(pages), "chunks": len(texts), "characters": len(extracted.text), "rounds": runs}


def main() -> None:
    parser: argparse.ArgumentParser = direct_args.parser(__doc__, "mistral-ocr-latest", corpus=False)
    parser.add_argument("--documents", type=Path, required=True)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--embedding-model", default="mistral-embed")
    args = parser.parse_args()
    manager, entry = direct_args.resolve(args)
    # only the entry: the second manager is never asked to load anything
    embedding_entry = direct_args.resolve(argparse.Namespace(data_dir=args.data_dir, model=args.embedding_model))[1]
    cases = json.loads((args.documents / "cases.json").read_text())

    async def run() -> dict[str, Any]:
        started = time.perf_counter()
        ocr = await manager.ocr(entry)  # the server's loaders: the same models and settings
        embedder = await manager.embedding(embedding_entry)
        load_s = time.perf_counter() - started
        out = {case["name"]: await _case(ocr, embedder, (args.documents / case["file"]).read_bytes(), case["mime"],
                                         args.chunk_size, args.rounds) for case in cases}
        return {"load_s": load_s, "cases": out}

    report = asyncio.run(run())
    manager.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
