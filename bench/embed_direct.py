"""The in-process baseline of the embeddings suite: the gateway's own loader (same model, same torch threads), then
``encode`` called directly, with no server in between, on every core (torch's default for a lone process). Run as
its own process; prints one JSON object.

    python bench/embed_direct.py --corpus corpus.json --data-dir DIR [--rounds 2] [--batch 64]

Each round times two ways: ``chunks`` encodes the corpus in the same 64-text pieces the API receives (the fair
baseline: the same work as the server), ``whole`` passes the whole corpus to one ``encode`` call, which sorts it by
length first (less padding; the best case). The model is loaded and warmed up once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import direct_args  # a sibling: this file runs as a script

__all__ = ["main"]


def _timed(fn: Any) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = direct_args.parser(__doc__, "mistral-embed")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    args = parser.parse_args()

    import torch

    manager, entry = direct_args.resolve(args)
    engine: Any = asyncio.run(manager.embedding(entry))  # the server's loader: the same weights and settings
    model = engine.model
    torch.set_num_threads(args.threads or os.cpu_count() or 1)  # encode's own default: every core for one call
    texts: list[str] = json.loads(args.corpus.read_text())
    chunks = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]

    def by_chunks() -> None:
        for chunk in chunks:
            model.encode(chunk, batch_size=args.batch, show_progress_bar=False)

    def whole() -> None:
        model.encode(texts, batch_size=args.batch, show_progress_bar=False)

    model.encode(texts[:args.batch], batch_size=args.batch, show_progress_bar=False)  # warm-up
    rounds = [{"chunks": _timed(by_chunks), "whole": _timed(whole)} for _ in range(args.rounds)]
    manager.close()
    print(json.dumps({"texts": len(texts), "batches": len(chunks), "rounds": rounds}))


if __name__ == "__main__":
    main()
