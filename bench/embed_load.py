"""Load generator for POST /v1/embeddings (or another list-input operation: ``--path``, ``--marker``), run as its
own process by the embeddings and moderation suites (aiohttp + uvloop).

    python bench/embed_load.py --url http://127.0.0.1:PORT --token T --corpus corpus.json --batch 64 --clients 1
    python bench/embed_load.py ... --batch 1 --clients 32 --limit 256

Sends the corpus (its first ``--limit`` texts) in requests of ``--batch`` texts from ``--clients`` concurrent
clients, each taking the next request as soon as its previous one is answered. Prints one JSON object: requests,
texts, wall seconds, per-request latency percentiles, errors (non-200 or a response without one vector per input).

aiohttp, not httpx: this process shares the machine's cores with the server, and with 32 concurrent clients
httpx's connection pool cost ~2 ms of CPU per request here (aiohttp ~0.1 ms), CPU the server then lacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["main"]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _run(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    pending = iter(enumerate(batches))
    latencies: list[float] = []
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {args.token}"}

    async def client_loop(client: aiohttp.ClientSession) -> None:
        for _, batch in pending:
            body: dict[str, Any] = {"model": args.model, "input": batch if args.batch > 1 else batch[0]}
            started = time.perf_counter()
            async with client.post(args.path, json=body) as r:
                content = await r.read()
            latencies.append(time.perf_counter() - started)
            if r.status != 200:
                errors.append(f"HTTP {r.status}: {content[:200]!r}")
            elif content.count(args.marker.encode()) != len(batch):
                errors.append(f"{len(batch)} inputs, another number of results")

    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(base_url=args.url, headers=headers, connector=connector, trust_env=False,
                                     timeout=aiohttp.ClientTimeout(total=300)) as client:
        async def warm() -> None:
            async with client.get("/health") as r:
                await r.read()

        # Connections are opened before the clock starts.
        await asyncio.gather(*[warm() for _ in range(args.clients)])
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(client) for _ in range(args.clients)])
        wall = time.perf_counter() - started
    return {
        "requests": len(batches),
        "texts": len(texts),
        "wall_s": wall,
        "p50_ms": 1e3 * (statistics.median(latencies) if latencies else 0.0),
        "p99_ms": 1e3 * _percentile(latencies, 0.99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="a JSON list of strings")
    parser.add_argument("--model", default="mistral-embed")
    parser.add_argument("--batch", type=int, default=64, help="texts per request (1: a string, not a list)")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N texts (0: all)")
    parser.add_argument("--path", default="/v1/embeddings", help="the operation's path")
    parser.add_argument("--marker", default='"object":"embedding"', help="appears once per input in an answer")
    args = parser.parse_args()
    texts: list[str] = json.loads(args.corpus.read_text())
    if args.limit:
        texts = texts[:args.limit]
    try:
        import uvloop  # the server's event loop too; less CPU per request than asyncio's
    except ImportError:
        print(json.dumps(asyncio.run(_run(args, texts))))
    else:
        print(json.dumps(uvloop.run(_run(args, texts))))


if __name__ == "__main__":
    main()
