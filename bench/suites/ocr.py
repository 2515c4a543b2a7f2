"""Suite "ocr": seconds per page and character accuracy of the local OCR model (``mistral-ocr-latest``) on documents
generated with known text (``tests/ocr_samples.py``):

(a) a 4-page PDF with a text layer (text, two-column and table pages): read from the text layer;
(b) the same 4 pages rendered at 150 dpi into an image-only PDF (a scan): rendered again and recognized;
(c) one page as a 150 dpi PNG: recognized.

Each document is read by the engine in-process (``bench/ocr_direct.py``, in its own process, the server's loader)
and, side by side, through ``POST /v1/ocr`` on ``mistral-gateway serve`` (a data URL, one request at a time, sent
by wrk on one connection: the server's time, not a Python client's). Rows
give pages per second (``req/s`` column), the median time per page, and the character similarity of the markdown
with the known text (markup and whitespace ignored). Targets: accuracy 1.0 on the text layer, >= 0.9 on scans; the
API at >= 0.9x the in-process pages per second. Rounds alternate their order (in-process first, then API first);
each in-process round is a fresh process whose model load is not timed. While the gateway answers ``POST /v1/ocr``
with 501 (the operation not yet live), the API rows are left out with a note.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample, min_ratio
from servers import Server, ServerError, free_port, launched
from wrk import run_wrk

from .embeddings import _json_process, _log
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["MIN_API_RATIO", "MIN_SCAN_ACCURACY", "run"]

SUITE = "ocr"
MODEL = "mistral-ocr-latest"
BENCH_DIR = Path(__file__).resolve().parent.parent
MIN_SCAN_ACCURACY = 0.9
MIN_API_RATIO = 0.9
PAGES = 4
MIN_ROUND_S = 1.0  # a timed round repeats its document at least this long, on both sides (a text page takes ms)


def _documents(folder: Path) -> list[dict[str, Any]]:
    """Writes the documents and ``cases.json`` (name, file, mime, known text) into ``folder``."""
    sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
    try:
        from ocr_samples import report_pdf, scan_pdf, scan_png, text_pdf
    finally:
        sys.path.remove(str(BENCH_DIR.parent / "tests"))
    report, page = report_pdf(PAGES), text_pdf()
    cases = [
        {"name": f"text-layer PDF, {PAGES} pages", "file": "text.pdf", "mime": "application/pdf",
         "text": report.text, "data": report.data, "scan": False},
        {"name": f"scanned PDF at 150 dpi, {PAGES} pages", "file": "scan.pdf", "mime": "application/pdf",
         "text": report.text, "data": scan_pdf(report), "scan": True},
        {"name": "PNG at 150 dpi, 1 page", "file": "page.png", "mime": "image/png", "text": page.text,
         "data": scan_png(page), "scan": True},
    ]
    for case in cases:
        (folder / case["file"]).write_bytes(case.pop("data"))
    (folder / "cases.json").write_text(json.dumps(cases))
    return cases


def _direct(folder: Path, data_dir: Path, rounds: int) -> dict[str, Any]:
    return _json_process([sys.executable, str(BENCH_DIR / "ocr_direct.py"), "--documents", str(folder),
                          "--data-dir", str(data_dir), "--rounds", str(rounds),
                          "--min-round-s", str(MIN_ROUND_S)], timeout_s=3600)


def _row(scenario: str, url: str, runs: list[dict[str, float]], pages: int, case: dict[str, Any],
         baseline: str | None = None) -> Row:
    samples = [Sample(rps=pages / r["wall_s"], p50_ms=1e3 * r["wall_s"] / pages, p99_ms=1e3 * r["wall_s"] / pages,
                      errors=0, requests=pages, duration_s=r["wall_s"], server_cpu_s=r.get("cpu_s", 0.0))
               for r in runs]
    accuracy = statistics.median(r["similarity"] for r in runs)
    row = Row(suite=SUITE, scenario=scenario, url=url, rps=statistics.median(s.rps for s in samples),
              p50_ms=statistics.median(s.p50_ms for s in samples), p99_ms=max(s.p50_ms for s in samples),
              errors=0, cpu_us_per_request=statistics.median(1e6 * s.server_cpu_s / pages for s in samples),
              server_cpu_percent=statistics.median(s.server_cpu_percent for s in samples), samples=samples,
              baseline=baseline, unit="pages/s")
    goal = MIN_SCAN_ACCURACY if case["scan"] else 1.0
    row.checks.append(Check("character accuracy", f">= {goal:g}", f"{accuracy:.3f}", accuracy >= goal))
    row.notes.append(f"info: p50 ms is the median time per page, p99 the slowest round's; {pages} page(s) per "
                     f"document")
    return row


def wrk_window(request_s: float) -> tuple[int, int]:
    """wrk's duration and timeout (whole seconds) for a request that took ``request_s``: at least MIN_ROUND_S and
    about four requests a round; the timeout well above one request."""
    duration = max(2, math.ceil(max(MIN_ROUND_S, 4 * request_s)))
    return duration, max(5, math.ceil(3 * request_s))


def post_script(body: bytes) -> str:
    """A wrk Lua script POSTing ``body`` (JSON: base64 and quotes only, so a level-2 long string holds it)."""
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body would end the Lua long string")
    return f'wrk.method = "POST"\nwrk.body = [==[{text}]==]\nwrk.headers["Content-Type"] = "application/json"\n'


def api_rounds(server: Server, token: str, folder: Path, case: dict[str, Any], rounds: int, *, warm_up: bool = True
               ) -> list[dict[str, float]] | None:
    """The API side: ``rounds`` timed runs of ``POST /v1/ocr`` with the case's document as a data URL (the way the
    SDK's ``client.ocr.process`` sends it), one request at a time from wrk on one connection (as the other suites'
    load: a C client, so Python client costs are not counted as the server's); one untimed request first reads the
    answer for the accuracy check. None while the operation answers 501."""
    import httpx

    sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
    try:
        from ocr_samples import similarity
    finally:
        sys.path.remove(str(BENCH_DIR.parent / "tests"))
    url = f"data:{case['mime']};base64," + base64.b64encode((folder / case["file"]).read_bytes()).decode()
    document = ({"type": "image_url", "image_url": url} if case["mime"].startswith("image/")
                else {"type": "document_url", "document_url": url})
    body = json.dumps({"model": MODEL, "document": document}).encode()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        response = client.post("/v1/ocr", content=body, headers={"Content-Type": "application/json"})
        request_s = time.perf_counter() - started
    if response.status_code == 501:
        return None
    response.raise_for_status()
    accuracy = similarity(case["text"], "\n\n".join(p["markdown"] for p in response.json()["pages"]))
    script = folder / f"{case['file']}.lua"
    script.write_text(post_script(body))
    duration, timeout = wrk_window(request_s)
    runs = []
    for attempt in range(rounds + warm_up):
        cpu_before = server.cpu_seconds()
        result = run_wrk(f"{server.base_url}/v1/ocr", duration_s=duration, connections=1, headers=headers,
                         timeout_s=timeout, script=script)
        if result.errors or (attempt >= warm_up and not result.requests):
            raise ServerError(f"POST /v1/ocr under wrk: {result.requests} requests, {result.errors} errors")
        if attempt >= warm_up:
            # the mean latency: requests run back to back, and a request cut off by the window's end is not counted
            runs.append({"wall_s": result.latency_avg_ms / 1e3,
                         "cpu_s": (server.cpu_seconds() - cpu_before) / result.requests, "similarity": accuracy})
    return runs


def run(config: BenchConfig) -> list[Row]:
    """Rounds alternate their order (in-process then API, then API then in-process), so load that drifts on the
    machine hits both alike; each in-process round is its own process (its model load is not timed)."""
    folder = config.workdir / "ocr-documents"
    folder.mkdir(parents=True, exist_ok=True)
    cases = _documents(folder)
    gateway, env = _gateway_command(), _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    direct: dict[str, list[dict[str, float]]] = {c["name"]: [] for c in cases}
    api: dict[str, list[dict[str, float]]] | None = {c["name"]: [] for c in cases}
    pages: dict[str, int] = {}
    loads: list[float] = []
    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw:

        def in_process() -> None:
            report = _direct(folder, data_dir, 1)
            loads.append(report["load_s"])
            for name, measured in report["cases"].items():
                direct[name] += measured["rounds"]
                pages[name] = measured["pages"]

        def through_api(round_no: int) -> None:
            nonlocal api
            for case in cases:
                runs = api_rounds(gw, token, folder, case, 1) if api is not None else None  # warmed connection
                if runs is None:
                    api = None
                    return
                api[case["name"]] += runs

        for round_no in range(config.rounds):
            steps = [in_process, lambda r=round_no: through_api(r)]
            for step in steps if round_no % 2 == 0 else steps[::-1]:
                step()
            _log(f"  round {round_no + 1}/{config.rounds}: " + ", ".join(
                f"{c['name']} {1e3 * direct[c['name']][-1]['wall_s'] / pages[c['name']]:.0f} ms/page in-process"
                + (f", {1e3 * api[c['name']][-1]['wall_s'] / pages[c['name']]:.0f} via the API" if api else "")
                for c in cases))
    rows: list[Row] = []
    for case in cases:
        name = case["name"]
        base = _row(f"{name}: in-process", "OcrEngine.read, in-process", direct[name], pages[name], case)
        base.notes.append(f"info: model load {statistics.median(loads):.2f} s (once per process)")
        rows.append(base)
        if api is None:
            base.notes.append("info: POST /v1/ocr answered 501: no API row yet")
            continue
        row = _row(f"{name}: POST /v1/ocr", "/v1/ocr", api[name], pages[name], case, baseline=base.scenario)
        row.ratio = row.rps / base.rps if row.rps and base.rps else None
        row.checks.append(min_ratio(row, MIN_API_RATIO))
        rows.append(row)
    return rows
