"""The in-process baseline of the moderation suite: the gateway's own loader builds the moderation model (the same
encoder, heads and feature extractors the server uses), then ``classify`` is called directly on the whole corpus,
with no server in between. Run as its own process; prints one JSON object.

    python bench/moderation_direct.py --corpus corpus.json --data-dir DIR [--rounds 2]
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import direct_args  # a sibling: this file runs as a script

__all__ = ["main"]


async def _rounds(engine: Any, texts: list[str], rounds: int) -> list[dict[str, float]]:
    await engine.classify(texts[:16])  # warm-up
    out = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        results = await engine.classify(texts)
        if len(results) != len(texts):
            raise SystemExit(f"{len(results)} results for {len(texts)} texts")
        out.append({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})
    return out


def main() -> None:
    args = direct_args.parser(__doc__, "mistral-moderation-latest").parse_args()
    manager, entry = direct_args.resolve(args)
    texts: list[str] = json.loads(args.corpus.read_text())

    async def run() -> list[dict[str, float]]:
        engine = await manager.classifier(entry)  # the server's loader: the same weights and settings
        return await _rounds(engine, texts, args.rounds)

    rounds = asyncio.run(run())
    manager.close()
    print(json.dumps({"texts": len(texts), "rounds": rounds}))


if __name__ == "__main__":
    main()
