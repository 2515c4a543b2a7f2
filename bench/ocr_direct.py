"""The in-process baseline of the OCR suite: the gateway's own loader builds the OCR engine (``mistral-ocr-latest``:
rapidocr with its bundled models, the same dpi, workers and threads as ``serve``), then ``read`` is called directly
on each document. Run as its own process; prints one JSON object.

    python bench/ocr_direct.py --documents DIR --data-dir DIR [--rounds 2]

``DIR`` holds the documents ``suites/ocr.py`` wrote (``<case>.<ext>`` and ``cases.json`` with their known text).
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

__all__ = ["main"]


async def _rounds(engine: Any, cases: list[dict[str, Any]], folder: Path, rounds: int,
                  min_round_s: float) -> dict[str, Any]:
    from mistral_gateway.engines.base import OcrOptions

    out: dict[str, Any] = {}
    for case in cases:
        data = (folder / case["file"]).read_bytes()
        await engine.read(data, OcrOptions(pages=(0,)))  # warm-up: the first inference of a shape costs more
        runs = []
        for _ in range(rounds):
            # a round reads the document again until MIN_ROUND_S have passed: one read of a text-layer PDF takes
            # milliseconds, which a single sample cannot time against the API side's
            reads, wall, cpu = 0, time.perf_counter(), time.process_time()
            while not reads or time.perf_counter() - wall < min_round_s:
                pages = await engine.read(data, OcrOptions())
                reads += 1
            runs.append({"wall_s": (time.perf_counter() - wall) / reads, "cpu_s": (time.process_time() - cpu) / reads,
                         "similarity": similarity(case["text"], "\n\n".join(p.markdown for p in pages))})
        out[case["name"]] = {"pages": len(pages), "rounds": runs}
    return out


def main() -> None:
    parser: argparse.ArgumentParser = direct_args.parser(__doc__, "mistral-ocr-latest", corpus=False)
    parser.add_argument("--documents", type=Path, required=True)
    parser.add_argument("--min-round-s", type=float, default=1.0, help="a timed round repeats a document this long")
    args = parser.parse_args()
    manager, entry = direct_args.resolve(args)
    cases = json.loads((args.documents / "cases.json").read_text())

    async def run() -> dict[str, Any]:
        started = time.perf_counter()
        engine = await manager.ocr(entry)  # the server's loader: the same models and settings
        load_s = time.perf_counter() - started
        return {"load_s": load_s, "workers": engine.workers, "cases": await _rounds(engine, cases, args.documents,
                                                                                    args.rounds, args.min_round_s)}

    report = asyncio.run(run())
    manager.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
