"""The in-process baseline of the OCR suite: the gateway's own loader builds the OCR engine (``mistral-ocr-latest``:
rapidocr with its bundled models, the same dpi, workers and threads as ``serve``), then ``read`` is called directly
on each document. It runs as its own process for the whole suite, so its rounds can sit right beside the API's:

    python bench/ocr_direct.py --documents DIR --data-dir DIR

``DIR`` holds the documents ``suites/ocr.py`` wrote (``<case>.<ext>`` and ``cases.json`` with their known text).
The first line printed is ``{"load_s", "workers"}`` (the model load); then each line read from stdin,
``{"case": name, "min_s": seconds}``, is answered with one JSON line: a timed round of that document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import direct_args  # a sibling: this file runs as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the samples' similarity measure
from ocr_samples import similarity

__all__ = ["main", "timed_round"]


async def timed_round(engine: Any, data: bytes, text: str, min_s: float) -> dict[str, Any]:
    """Reads ``data`` again and again until ``min_s`` have passed (one read of a text-layer PDF takes milliseconds,
    which a single sample cannot time against the API side's): wall and CPU seconds per read, the pages, and the
    similarity of the last read's markdown with ``text``."""
    from mistral_gateway.engines.base import OcrOptions

    reads, wall, cpu = 0, time.perf_counter(), time.process_time()
    while not reads or time.perf_counter() - wall < min_s:
        pages = await engine.read(data, OcrOptions())
        reads += 1
    return {"wall_s": (time.perf_counter() - wall) / reads, "cpu_s": (time.process_time() - cpu) / reads,
            "reads": reads, "pages": len(pages),
            "similarity": similarity(text, "\n\n".join(p.markdown for p in pages))}


async def _serve(engine: Any, cases: dict[str, dict[str, Any]], folder: Path) -> None:
    from mistral_gateway.engines.base import OcrOptions

    documents = {name: (folder / case["file"]).read_bytes() for name, case in cases.items()}
    for data in documents.values():
        await engine.read(data, OcrOptions(pages=(0,)))  # warm-up: the first inference of a shape costs more
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        ask = json.loads(line)
        out = await timed_round(engine, documents[ask["case"]], cases[ask["case"]]["text"], float(ask["min_s"]))
        print(json.dumps(out), flush=True)


def main() -> None:
    parser: argparse.ArgumentParser = direct_args.parser(__doc__, "mistral-ocr-latest", corpus=False)
    parser.add_argument("--documents", type=Path, required=True)
    args = parser.parse_args()
    manager, entry = direct_args.resolve(args)
    cases = {case["name"]: case for case in json.loads((args.documents / "cases.json").read_text())}

    async def run() -> None:
        started = time.perf_counter()
        engine = await manager.ocr(entry)  # the server's loader: the same models and settings
        print(json.dumps({"load_s": time.perf_counter() - started, "workers": engine.workers}), flush=True)
        await _serve(engine, cases, args.documents)

    try:
        asyncio.run(run())
    finally:
        manager.close()


if __name__ == "__main__":
    main()
