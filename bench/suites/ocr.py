"""Suite "ocr": seconds per page and character accuracy of the local OCR model (``mistral-ocr-latest``) on documents
generated with known text (``tests/ocr_samples.py``):

(a) a 4-page PDF with a text layer (text, two-column and table pages): read from the text layer;
(b) the same 4 pages rendered at 150 dpi into an image-only PDF (a scan): rendered again and recognized;
(c) one page as a 150 dpi PNG: recognized.

Each document is read by the engine in-process (``bench/ocr_direct.py``: one process for the suite, the server's
loader, its model load not timed) and, side by side, through ``POST /v1/ocr`` on ``mistral-gateway serve`` (a data
URL, one request at a time, sent by wrk on one connection: the server's time, not a Python client's). Rows give
pages per second (``req/s`` column), the median time per page, and the character similarity of the markdown with
the known text (markup and whitespace ignored). Targets: accuracy 1.0 on the text layer, >= 0.9 on scans; the API
at >= 0.9x the in-process pages per second.

A third side shows the floor: ``bench/ocr_floor.py``, a bare uvicorn + Starlette app calling the same engine (no
authentication, validation, metering or logging), so a row can say what HTTP itself costs on this machine and what
the gateway adds to it. It has no target.

Each round runs every side once for the same time, back to back, rotating which goes first; a ratio is the median
of the rounds' paired ratios. A document read in milliseconds (the text layer) gets at least SHORT_ROUNDS rounds.
While the gateway answers ``POST /v1/ocr`` with 501 (the operation not yet live), the API rows are left out with a
note.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample, min_ratio
from servers import Server, ServerError, free_port, launched
from wrk import run_wrk

from .embeddings import _log
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["MIN_API_RATIO", "MIN_SCAN_ACCURACY", "run"]

SUITE = "ocr"
MODEL = "mistral-ocr-latest"
BENCH_DIR = Path(__file__).resolve().parent.parent
MIN_SCAN_ACCURACY = 0.9
MIN_API_RATIO = 0.9
PAGES = 4
MIN_ROUND_S = 3.0  # a timed round repeats its document at least this long, on both sides (a text page takes ms)
SHORT_REQUEST_S = 0.1  # a document read faster than this (a text layer) gets SHORT_ROUNDS rounds
SHORT_ROUNDS = 8
SIDES = {"in-process": "in-process", "api": "via the API", "floor": "via the bare HTTP floor"}


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
    """A round's duration and wrk's timeout (whole seconds) for a request that took ``request_s``: at least
    MIN_ROUND_S and about four requests a round; the timeout well above one request."""
    duration = math.ceil(max(MIN_ROUND_S, 4 * request_s))
    return duration, max(5, math.ceil(3 * request_s))


def rounds_for(request_s: float, configured: int) -> int:
    """A document read in milliseconds gets at least SHORT_ROUNDS rounds: they cost seconds, and its ratio is
    otherwise at the mercy of the machine's drift (+-5% from one few-second window to the next on the shared
    machine); a slow one gets the configured rounds."""
    return max(configured, SHORT_ROUNDS) if request_s < SHORT_REQUEST_S else configured


def paired_ratio(api: list[dict[str, float]], direct: list[dict[str, float]]) -> float | None:
    """The median over rounds of the API's pages/s over its in-process neighbour's: each pair ran back to back,
    so load that drifts on the machine cancels within a pair rather than landing on one side."""
    ratios = [d["wall_s"] / a["wall_s"] for a, d in zip(api, direct, strict=True) if a["wall_s"] > 0]
    return statistics.median(ratios) if ratios else None


def post_script(body: bytes) -> str:
    """A wrk Lua script POSTing ``body`` (JSON: base64 and quotes only, so a level-2 long string holds it)."""
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body would end the Lua long string")
    return f'wrk.method = "POST"\nwrk.body = [==[{text}]==]\nwrk.headers["Content-Type"] = "application/json"\n'


@dataclass(frozen=True, slots=True)
class ApiCase:
    """What the API side of a case needs: its body, the wrk script posting it, one request's time, the accuracy."""

    body: bytes
    script: Path
    request_s: float
    similarity: float


def api_probe(server: Server, token: str, folder: Path, case: dict[str, Any]) -> ApiCase | None:
    """Two ``POST /v1/ocr`` with the case's document as a data URL (the way the SDK's ``client.ocr.process`` sends
    it): the first one's answer for the accuracy check, the second one's time for the rounds' window, and the wrk
    script for the timed rounds. None while the operation answers 501."""
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
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
        response = client.post("/v1/ocr", content=body, headers={"Content-Type": "application/json"})
        if response.status_code == 501:
            return None
        response.raise_for_status()
        started = time.perf_counter()  # timed the second time: the first one may have loaded the model
        client.post("/v1/ocr", content=body, headers={"Content-Type": "application/json"}).raise_for_status()
        request_s = time.perf_counter() - started
    script = folder / f"{case['file']}.lua"
    script.write_text(post_script(body))
    return ApiCase(body, script, request_s,
                   similarity(case["text"], "\n\n".join(p["markdown"] for p in response.json()["pages"])))


def api_round(server: Server, token: str, case: ApiCase, duration_s: int, timeout_s: int) -> dict[str, float]:
    """One timed round: wrk posting the document one request at a time on one connection (as the other suites'
    load: a C client, so Python client costs are not counted as the server's) for ``duration_s``."""
    cpu_before = server.cpu_seconds()
    result = run_wrk(f"{server.base_url}/v1/ocr", duration_s=duration_s, connections=1,
                     headers={"Authorization": f"Bearer {token}"}, timeout_s=timeout_s, script=case.script)
    if result.errors or not result.requests:
        raise ServerError(f"POST /v1/ocr under wrk: {result.requests} requests, {result.errors} errors")
    # the mean latency: requests run back to back, and a request cut off by the window's end is not counted
    return {"wall_s": result.latency_avg_ms / 1e3, "cpu_s": (server.cpu_seconds() - cpu_before) / result.requests,
            "similarity": case.similarity}


class Baseline:
    """The in-process side: one ``ocr_direct.py`` process for the whole suite (its model load timed apart), asked
    for one timed round at a time so each sits beside an API round."""

    def __init__(self, folder: Path, data_dir: Path) -> None:
        self._proc = subprocess.Popen([sys.executable, str(BENCH_DIR / "ocr_direct.py"), "--documents", str(folder),
                                       "--data-dir", str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.load_s = float(self._answer()["load_s"])

    def round(self, name: str, min_s: float) -> dict[str, float]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"case": name, "min_s": min_s}) + "\n")
        self._proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()  # its loop ends at end of input
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _answer(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            assert self._proc.stderr is not None
            raise ServerError(f"ocr_direct.py ended ({self._proc.returncode}): {self._proc.stderr.read()[-2000:]}")
        return json.loads(line)  # type: ignore[no-any-return]


def _post_once(server: Server, token: str, case: ApiCase) -> None:
    """One request outside the rounds (a server loads its model on its first)."""
    import httpx

    response = httpx.post(f"{server.base_url}/v1/ocr", content=case.body, timeout=600,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response.raise_for_status()


def _measure(servers: dict[str, Server], token: str, folder: Path, baseline: Baseline, case: dict[str, Any],
             configured: int, api_on: bool) -> dict[str, list[dict[str, float]]]:
    """The case's rounds, side by side: each round runs every side once (in-process, the gateway's API, the HTTP
    floor), rotating which goes first. Runs per side; only the in-process side while the API answers 501."""
    probe = api_probe(servers["api"], token, folder, case) if api_on else None
    request_s = probe.request_s if probe else baseline.round(case["name"], 0)["wall_s"]
    duration, timeout = wrk_window(request_s)
    sides = ["in-process", *(servers if probe is not None else ())]
    if probe is not None:
        _post_once(servers["floor"], token, probe)
        if request_s < SHORT_REQUEST_S:  # warm-up: a short document's path runs hot, as in the rounds
            for name in servers:
                api_round(servers[name], token, probe, 2, timeout)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for round_no in range(rounds_for(request_s, configured)):
        turn = round_no % len(sides)
        for side in sides[turn:] + sides[:turn]:
            if side == "in-process":
                runs[side].append(baseline.round(case["name"], duration))
            elif probe is not None:
                runs[side].append(api_round(servers[side], token, probe, duration, timeout))
        pages = runs["in-process"][-1]["pages"]
        _log(f"  {case['name']} round {round_no + 1}: "
             + ", ".join(f"{1e3 * r[-1]['wall_s'] / pages:.2f} ms/page {SIDES[side]}" for side, r in runs.items()))
    return runs


def run(config: BenchConfig) -> list[Row]:
    """Per case, rounds side by side (see ``_measure``); rows and ratios from them (see ``_rows``)."""
    folder = config.workdir / "ocr-documents"
    folder.mkdir(parents=True, exist_ok=True)
    cases = _documents(folder)
    gateway, env = _gateway_command(), _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    measured: dict[str, dict[str, list[dict[str, float]]]] = {}
    port, floor_port = free_port(), free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw, \
         launched("floor", [sys.executable, str(BENCH_DIR / "ocr_floor.py"), "--port", str(floor_port),
                            "--data-dir", str(data_dir)], port=floor_port, env=env,
                  log_path=config.workdir / "ocr-floor.log") as floor:
        baseline = Baseline(folder, data_dir)
        try:
            api_on = True
            for case in cases:
                measured[case["name"]] = _measure({"api": gw, "floor": floor}, token, folder, baseline, case,
                                                  config.rounds, api_on)
                api_on = "api" in measured[case["name"]]
        finally:
            baseline.close()
    rows: list[Row] = []
    for case in cases:
        rows += _rows(case, measured[case["name"]], baseline.load_s)
    return rows


def _rows(case: dict[str, Any], runs: dict[str, list[dict[str, float]]], load_s: float) -> list[Row]:
    direct = runs["in-process"]
    pages = int(direct[0]["pages"])
    base = _row(f"{case['name']}: in-process", "OcrEngine.read, in-process", direct, pages, case)
    base.notes.append(f"info: model load {load_s:.2f} s (once, not timed); {len(direct)} rounds")
    out = [base]
    if "api" not in runs:
        base.notes.append("info: POST /v1/ocr answered 501: no API row yet")
        return out
    row = _row(f"{case['name']}: POST /v1/ocr", "/v1/ocr", runs["api"], pages, case, baseline=base.scenario)
    row.ratio = paired_ratio(runs["api"], direct)
    row.notes.append("info: the ratio is the median of the rounds' paired ratios (each API round beside its "
                     "in-process one)")
    row.checks.append(min_ratio(row, MIN_API_RATIO))
    out.append(row)
    if "floor" in runs:
        floor = _row(f"{case['name']}: bare HTTP floor", "ocr_floor.py /v1/ocr", runs["floor"], pages, case,
                     baseline=base.scenario)
        floor.ratio = paired_ratio(runs["floor"], direct)
        floor.checks.clear()  # its answers are not read: the same engine as the API's, whose accuracy is checked
        api_vs_floor = paired_ratio(runs["api"], runs["floor"])
        floor.notes.append("info: a bare uvicorn + Starlette app calling the same engine (bench/ocr_floor.py): what "
                           "HTTP alone costs here; no target. The gateway's API at "
                           f"{api_vs_floor:.2f}x of it" if api_vs_floor else "info: no pairs")
        out.append(floor)
    return out
