"""Suite "batch": 200 short chat requests as one batch job against the same 200 sent one after another.

Both run on the real SmolLM2-135M (``ministral-3b-latest``, 8 tokens each, distinct prompts) through one gateway
started with `serve` (its embedded job worker runs the batch). The sequential side is one client posting each
request and waiting for its answer; the batch side uploads the JSONL, creates the job and polls it until it ends
(the output file written), so the measured time includes everything a batch caller waits for.
Target: the batch finishes >= 2x faster (it keeps the model's slots busy, so llama.cpp batches the lines).

Rounds are interleaved and alternate their order, as in the other suites; the table shows medians.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from core import BenchConfig, Row, Sample, min_ratio
from servers import Server, ServerError, free_port, launched

from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["MIN_RATIO", "REQUESTS", "run"]

SUITE = "batch"
MODEL = "ministral-3b-latest"
REQUESTS = 200
MAX_TOKENS = 8
MIN_RATIO = 2.0
POLL_S = 0.2
JOB_TIMEOUT_S = 1800


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _bodies(round_no: int) -> list[dict[str, Any]]:
    """Distinct prompts per round (no prompt-cache advantage for either side), temperature 0."""
    return [{"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0,
             "messages": [{"role": "user", "content": f"Round {round_no}, item {i}: name a colour."}]}
            for i in range(REQUESTS)]


def _sequential(client: httpx.Client, bodies: list[dict[str, Any]]) -> tuple[float, int]:
    errors, start = 0, time.perf_counter()
    for body in bodies:
        if client.post("/v1/chat/completions", json=body).status_code != 200:
            errors += 1
    return time.perf_counter() - start, errors


def _batch(client: httpx.Client, bodies: list[dict[str, Any]]) -> tuple[float, int]:
    lines = "".join(json.dumps({"custom_id": str(i), "body": b}) + "\n" for i, b in enumerate(bodies))
    start = time.perf_counter()
    upload = client.post("/v1/files", data={"purpose": "batch"},
                         files={"file": ("requests.jsonl", io.BytesIO(lines.encode()))})
    if upload.status_code != 200:
        raise ServerError(f"batch input upload answered {upload.status_code}: {upload.text[:300]}")
    job = client.post("/v1/batch/jobs", json={"input_files": [upload.json()["id"]], "model": MODEL,
                                              "endpoint": "/v1/chat/completions"})
    if job.status_code != 200:
        raise ServerError(f"batch create answered {job.status_code}: {job.text[:300]}")
    job_id, deadline = job.json()["id"], time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        state = client.get(f"/v1/batch/jobs/{job_id}").json()
        if state["status"] not in ("QUEUED", "RUNNING", "CANCELLATION_REQUESTED"):
            if state["status"] != "SUCCESS":
                raise ServerError(f"batch {job_id} ended {state['status']}: {state.get('errors')}")
            return time.perf_counter() - start, state["failed_requests"]
        time.sleep(POLL_S)
    raise ServerError(f"batch {job_id} did not finish within {JOB_TIMEOUT_S} s")


def _row(scenario: str, samples: list[Sample], baseline: str | None = None) -> Row:
    cpu = [s.cpu_us_per_request for s in samples if s.cpu_us_per_request is not None]
    return Row(suite=SUITE, scenario=scenario, url="/v1/batch/jobs" if baseline else "/v1/chat/completions",
               rps=statistics.median(s.rps for s in samples), p50_ms=None, p99_ms=None,
               errors=sum(s.errors for s in samples), cpu_us_per_request=statistics.median(cpu) if cpu else None,
               server_cpu_percent=statistics.median(s.server_cpu_percent for s in samples), samples=samples,
               baseline=baseline)


def _measure(server: Server, step: Callable[[], tuple[float, int]]) -> Sample:
    before = server.cpu_seconds()
    wall, errors = step()
    return Sample(rps=REQUESTS / wall, p50_ms=0.0, p99_ms=0.0, errors=errors, requests=REQUESTS, duration_s=wall,
                  server_cpu_s=server.cpu_seconds() - before)


def run(config: BenchConfig) -> list[Row]:
    gateway, env = _gateway_command(), _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    names = {"seq": f"{REQUESTS} chats, one after another", "batch": f"{REQUESTS} chats as one batch job"}
    samples: dict[str, list[Sample]] = {key: [] for key in names}
    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw, \
            httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as client:
        _log(f"  gateway {gw.base_url} (pid {gw.proc.pid}); loading {MODEL} with a warm-up request")
        _sequential(client, _bodies(-1)[:4])
        for round_no in range(config.rounds):
            bodies = _bodies(round_no)
            steps = [("seq", lambda b=bodies: _sequential(client, b)), ("batch", lambda b=bodies: _batch(client, b))]
            for key, step in steps if round_no % 2 == 0 else reversed(steps):
                samples[key].append(_measure(gw, step))
                last = samples[key][-1]
                _log(f"  round {round_no + 1}/{config.rounds}  {names[key]:<40} {last.rps:>7.1f} req/s  "
                     f"{last.duration_s:6.1f} s  errors {last.errors}")
    seq_row = _row(names["seq"], samples["seq"])
    batch_row = _row(names["batch"], samples["batch"], baseline=names["seq"])
    batch_row.ratio = batch_row.rps / seq_row.rps if batch_row.rps and seq_row.rps else None
    batch_row.checks = [min_ratio(batch_row, MIN_RATIO)]
    return [seq_row, batch_row]
