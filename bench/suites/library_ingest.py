"""Suite "library_ingest": how fast library documents are ingested, end to end through the ``library_ingest`` job
(extract, chunk, embed with ``mistral-embed``, index), for a text-layer PDF and for scanned pages: full pages of
prose (``tests/library_samples.py``'s ``prose_pdf``, about 3,000 characters a page, as a report has), and the same
kind of pages rendered at 150 dpi into an image-only PDF:

- ``ingestion job``: each round uploads the document into a new library of ``mistral-gateway serve``
  (``POST /v1/libraries/{id}/documents``) and waits for ``done``; the job's time is the server's own, from the
  document's ``created_at`` (the upload saved) to its ``last_processed_at`` (indexed), so polling adds nothing.
  Rows in pages/s and in chunks/s.
- the baselines, side by side in the same rounds (``bench/library_ingest_direct.py``, its own process, the server's
  loaders): ``OcrEngine.read`` alone on the same pages (pages/s), and the embedding model alone on the same chunks
  in ingestion's batches (chunks/s). The job's ratio to each says what the rest of the pipeline costs: a scan is
  OCR-bound, a text layer embedding-bound.

Rounds alternate their order (in-process first, then the server). No target in the issue: the rows are a report.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from core import BenchConfig, Row, Sample
from servers import Server, ServerError, free_port, launched

from .embeddings import _json_process, _log
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["CHUNK_SIZE", "rows", "run"]

SUITE = "library_ingest"
BENCH_DIR = Path(__file__).resolve().parent.parent
CHUNK_SIZE = 1000  # the default chunk_size of a library
TEXT_PAGES = 10
SCAN_PAGES = 2


def _documents(folder: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
    try:
        from library_samples import prose_pdf
        from ocr_samples import scan_pdf
    finally:
        sys.path.remove(str(BENCH_DIR.parent / "tests"))
    cases = [
        {"name": f"text-layer PDF, {TEXT_PAGES} pages", "file": "text.pdf", "mime": "application/pdf",
         "data": prose_pdf(TEXT_PAGES).data},
        {"name": f"scanned PDF at 150 dpi, {SCAN_PAGES} pages", "file": "scan.pdf", "mime": "application/pdf",
         "data": scan_pdf(prose_pdf(SCAN_PAGES, seed=1))},
    ]
    for case in cases:
        (folder / case["file"]).write_bytes(case.pop("data"))
    (folder / "cases.json").write_text(json.dumps(cases))
    return cases


def _seconds(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def ingest(client: Any, file: Path, *, polls: int = 36_000) -> dict[str, float]:
    """Uploads ``file`` into a new library and waits for it to be processed; the job's seconds by the server's
    clock, and the client's from the upload's start (for information)."""
    library = client.post("/v1/libraries", json={"name": f"bench {time.time_ns()}", "chunk_size": CHUNK_SIZE})
    library.raise_for_status()
    library_id = library.json()["id"]
    started = time.perf_counter()
    r = client.post(f"/v1/libraries/{library_id}/documents", files={"file": (file.name, file.read_bytes())})
    r.raise_for_status()
    url = f"/v1/libraries/{library_id}/documents/{r.json()['id']}"
    for _ in range(polls):
        body = client.get(url).json()
        if body["process_status"] == "done":
            client_s = time.perf_counter() - started
            client.delete(f"/v1/libraries/{library_id}").raise_for_status()
            return {"job_s": _seconds(body["last_processed_at"]) - _seconds(body["created_at"]),
                    "client_s": client_s, "pages": body["number_of_pages"] or 0}
        if body["process_status"] == "error":
            raise ServerError(f"ingesting {file.name} failed: {body['processing_status']}")
        time.sleep(0.02)
    raise ServerError(f"ingesting {file.name}: not processed after {polls} polls")


def _row(scenario: str, url: str, seconds: list[float], units: int, unit: str, baseline: str | None = None) -> Row:
    samples = [Sample(rps=units / s, p50_ms=1e3 * s, p99_ms=1e3 * s, errors=0, requests=units, duration_s=s,
                      server_cpu_s=0.0) for s in seconds]
    return Row(suite=SUITE, scenario=scenario, url=url, rps=statistics.median(s.rps for s in samples),
               p50_ms=statistics.median(s.p50_ms for s in samples), p99_ms=max(s.p50_ms for s in samples),
               errors=0, cpu_us_per_request=None, server_cpu_percent=None, samples=samples, baseline=baseline,
               unit=unit)


def rows(name: str, direct: dict[str, Any], jobs: list[dict[str, float]]) -> list[Row]:
    """The four rows of one document: its baselines (OCR alone in pages/s, embedding alone in chunks/s) and the
    ingestion job in both units, each with its ratio to the matching baseline."""
    pages, chunks = direct["pages"], direct["chunks"]
    ocr = _row(f"{name}: OcrEngine.read alone", "OcrEngine.read, in-process", [r["ocr_s"] for r in direct["rounds"]],
               pages, "pages/s")
    embed = _row(f"{name}: embedding alone, {chunks} chunks", "EmbeddingEngine.embed, in-process",
                 [r["embed_s"] for r in direct["rounds"]], chunks, "chunks/s")
    path = "POST /v1/libraries/{id}/documents -> done"
    job_pages = _row(f"{name}: ingestion job, pages/s", path, [j["job_s"] for j in jobs], pages, "pages/s",
                     baseline=ocr.scenario)
    job_chunks = _row(f"{name}: ingestion job, chunks/s", path, [j["job_s"] for j in jobs], chunks, "chunks/s",
                      baseline=embed.scenario)
    for row, base in ((job_pages, ocr), (job_chunks, embed)):
        row.ratio = row.rps / base.rps if row.rps and base.rps else None
        row.notes.append("info: p50 ms is the median job time (created_at to last_processed_at), p99 the slowest "
                         f"round's; client-side upload to done {statistics.median(j['client_s'] for j in jobs):.2f} s")
    embed.notes.append(f"info: {chunks} chunks of at most {CHUNK_SIZE} characters from {direct['characters']} "
                       f"characters of extracted text")
    return [ocr, embed, job_pages, job_chunks]


def run(config: BenchConfig) -> list[Row]:
    import httpx

    (folder := config.workdir / "library-documents").mkdir(parents=True, exist_ok=True)
    cases = _documents(folder)
    gateway, env, data_dir = _gateway_command(), _gateway_env(), config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    direct: dict[str, dict[str, Any]] = {}
    jobs: dict[str, list[dict[str, float]]] = {c["name"]: [] for c in cases}
    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw, \
            httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:

        def in_process() -> None:
            script = str(BENCH_DIR / "library_ingest_direct.py")
            report = _json_process([sys.executable, script, "--documents", str(folder), "--data-dir", str(data_dir),
                                    "--rounds", "1", "--chunk-size", str(CHUNK_SIZE)], timeout_s=3600)
            for name, measured in report["cases"].items():
                direct.setdefault(name, {**measured, "rounds": []})["rounds"] += measured["rounds"]

        def through_server() -> None:
            for case in cases:
                jobs[case["name"]].append(ingest(client, folder / case["file"]))

        _warm_up(client, folder / "scan.pdf", gw)
        for round_no in range(config.rounds):
            steps = [in_process, through_server]
            for step in steps if round_no % 2 == 0 else steps[::-1]:
                step()
            _log(f"  round {round_no + 1}/{config.rounds}: " + ", ".join(
                f"{c['name']}: job {jobs[c['name']][-1]['job_s']:.2f} s, OCR alone "
                f"{direct[c['name']]['rounds'][-1]['ocr_s']:.2f} s, embedding alone "
                f"{direct[c['name']]['rounds'][-1]['embed_s']:.2f} s" for c in cases))
    return [row for c in cases for row in rows(c["name"], direct[c["name"]], jobs[c["name"]])]


def _warm_up(client: Any, scan: Path, server: Server) -> None:
    """One untimed ingestion loads the OCR and embedding models into the server."""
    try:
        ingest(client, scan)
    except ServerError as exc:
        raise ServerError(f"{exc} (see {server.name}'s log)") from None
