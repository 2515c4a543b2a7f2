"""Suite "conversations": what a conversation turn adds over a bare chat completion of the same prompt, and how fast
a long conversation's history is read.

(a) One client, one request at a time: ``POST /v1/chat/completions`` and ``POST /v1/conversations`` (stored, the
    same one-message prompt, the same max_tokens), interleaved, on the fake engine (target: <= 5 ms added at p50)
    and on the real SmolLM2-135M (``ministral-3b-latest``; target: <= 2% of the wall time added at p50).
(b) ``GET /v1/conversations/{id}/history`` of a 200-entry conversation (fake engine): p50/p99.

Each side runs in the same gateway process (`serve`); rounds alternate their order; the table shows medians.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from core import BenchConfig, Check, Row, Sample
from servers import free_port, launched

from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["run"]

SUITE = "conversations"
REQUESTS = 40
HISTORY_READS = 200
HISTORY_ENTRIES = 200
MAX_TOKENS = 8
FAKE_OVERHEAD_MS = 5.0
REAL_OVERHEAD = 0.02
FAKE_MODELS = [{"id": "fake-chat", "engine": "fake", "capabilities": ["completion_chat"],
                "aliases": ["ministral-3b-latest"]}]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(client: httpx.Client, path: str, bodies: list[dict[str, Any]] | None, count: int) -> list[float]:
    """Latencies (ms) of ``count`` requests, one at a time (GET when ``bodies`` is None)."""
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        r = client.get(path) if bodies is None else client.post(path, json=bodies[i % len(bodies)])
        latencies.append(1e3 * (time.perf_counter() - start))
        if r.status_code != 200:
            raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
    return latencies


def _sample(latencies: list[float], cpu_s: float) -> Sample:
    wall = sum(latencies) / 1e3
    ordered = sorted(latencies)
    return Sample(rps=len(latencies) / wall, p50_ms=statistics.median(ordered),
                  p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], errors=0,
                  requests=len(latencies), duration_s=wall, server_cpu_s=cpu_s)


def _row(scenario: str, url: str, samples: list[Sample], baseline: str | None = None) -> Row:
    cpu = [s.cpu_us_per_request for s in samples if s.cpu_us_per_request is not None]
    return Row(suite=SUITE, scenario=scenario, url=url, rps=statistics.median(s.rps for s in samples),
               p50_ms=statistics.median(s.p50_ms for s in samples), p99_ms=statistics.median(s.p99_ms for s in samples),
               errors=0, cpu_us_per_request=statistics.median(cpu) if cpu else None,
               server_cpu_percent=statistics.median(s.server_cpu_percent for s in samples), samples=samples,
               baseline=baseline)


def _pair(config: BenchConfig, label: str, fake: bool) -> list[Row]:
    gateway, env = _gateway_command(), _gateway_env()
    if fake:
        env["MISTRAL_GATEWAY_MODELS"] = json.dumps(FAKE_MODELS)
    data_dir = config.workdir / f"conversations-{'fake' if fake else 'real'}"
    token = _create_token(gateway, data_dir, env)
    prompts = [f"Item {i}: name a colour." for i in range(REQUESTS)]
    chat = [{"model": "ministral-3b-latest", "max_tokens": MAX_TOKENS, "temperature": 0,
             "messages": [{"role": "user", "content": p}]} for p in prompts]
    conv = [{"model": "ministral-3b-latest", "inputs": p, "completion_args": {"max_tokens": MAX_TOKENS,
                                                                              "temperature": 0}} for p in prompts]
    names = {"chat": f"{label}: bare chat completion", "conv": f"{label}: conversation start, same prompt"}
    samples: dict[str, list[Sample]] = {k: [] for k in names}
    rows: list[Row] = []
    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw, \
            httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as client:
        _timed(client, "/v1/chat/completions", chat, 4)  # load the model
        _timed(client, "/v1/conversations", conv, 4)
        steps: list[tuple[str, Callable[[], list[float]]]] = [
            ("chat", lambda: _timed(client, "/v1/chat/completions", chat, REQUESTS)),
            ("conv", lambda: _timed(client, "/v1/conversations", conv, REQUESTS))]
        for round_no in range(config.rounds):
            for key, step in steps if round_no % 2 == 0 else reversed(steps):
                before = gw.cpu_seconds()
                samples[key].append(_sample(step(), gw.cpu_seconds() - before))
                _log(f"  round {round_no + 1}/{config.rounds}  {names[key]:<48} p50 {samples[key][-1].p50_ms:7.2f} ms")
        if fake:
            rows.append(_history(client, gw.cpu_seconds))
    base = _row(names["chat"], "/v1/chat/completions", samples["chat"])
    turn = _row(names["conv"], "/v1/conversations", samples["conv"], baseline=names["chat"])
    turn.ratio = turn.rps / base.rps if turn.rps and base.rps else None
    added = (turn.p50_ms or 0.0) - (base.p50_ms or 0.0)
    if fake:
        turn.checks = [Check("added at p50 (fake engine)", f"<= {FAKE_OVERHEAD_MS:g} ms", f"{added:.2f} ms",
                             added <= FAKE_OVERHEAD_MS)]
    else:
        share = added / base.p50_ms if base.p50_ms else 0.0
        turn.checks = [Check("added at p50 (real model)", f"<= {REAL_OVERHEAD:.0%} of the wall time",
                             f"{share:.1%} ({added:.1f} ms)", share <= REAL_OVERHEAD)]
    return [base, turn, *rows]


def _history(client: httpx.Client, cpu: Callable[[], float]) -> Row:
    inputs = [{"role": "user", "content": f"line {i}"} for i in range(HISTORY_ENTRIES - 1)]
    r = client.post("/v1/conversations", json={"model": "ministral-3b-latest", "inputs": inputs,
                                               "completion_args": {"max_tokens": 2}})
    if r.status_code != 200:
        raise RuntimeError(f"building the long conversation answered {r.status_code}: {r.text[:300]}")
    path = f"/v1/conversations/{r.json()['conversation_id']}/history"
    _timed(client, path, None, 5)
    before = cpu()
    latencies = _timed(client, path, None, HISTORY_READS)
    return _row(f"history of a {HISTORY_ENTRIES}-entry conversation", "/v1/conversations/{id}/history",
                [_sample(latencies, cpu() - before)])


def run(config: BenchConfig) -> list[Row]:
    return [*_pair(config, "fake engine", fake=True), *_pair(config, "SmolLM2-135M", fake=False)]
