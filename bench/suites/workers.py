"""Suite "workers": how throughput scales with ``mistral-gateway serve --workers N`` (N = 1, 2, 4), side by side.

Three gateways run at once (``--workers 1``, ``2`` and ``4``; ``--no-worker``: no job pollers; each with its own
data dir and token), all with one model, ``bench-model``, routed to the canned upstream (``bench/canned_upstream.py``,
one process), as in the ``proxy`` suite. Two loads, each with the same wrk (``-t<threads> -c<connections>``):

- ``GET /v1/models`` (Bearer), the lightest authenticated request;
- ``POST /v1/chat/completions`` non-streamed, proxied to the upstream (the upstream's CPU is not the gateway's).

Targets are interleaved over ``--rounds`` (medians reported). Each N > 1 row's baseline is the same load at N = 1:
its ratio is the scaling, and a note gives the gain per added worker process. The server CPU column counts the
whole process tree (the supervisor and its workers). No target: on this 2-core machine wrk, the upstream and the
workers share two cores, so beyond 2 workers nothing can scale; the figures say what N costs or gains here, and
the suite is meant to be rerun on the machine that will serve.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

from core import BenchConfig, Row, Sample, Target, summarise
from servers import ServerError, free_port, launched
from wrk import run_wrk

from .models import _create_token, _gateway_command, _gateway_env
from .proxy import CHAT_PATH, EXPECT, _body, _cpu, _post, gateway_config, wrk_script

__all__ = ["WORKER_COUNTS", "per_worker_note", "run"]

SUITE = "workers"
WORKER_COUNTS = (1, 2, 4)
MODELS_PATH = "/v1/models"
BENCH_DIR = Path(__file__).resolve().parent.parent


def scenario(load: str, workers: int) -> str:
    return f"{load} --workers {workers}"


def per_worker_note(rps: float, base_rps: float, workers: int) -> str:
    """The scaling of ``workers`` processes over one, and what each added process gained (relative to one)."""
    scaling = rps / base_rps
    return f"{scaling:.2f}x of --workers 1; {100 * (scaling - 1) / (workers - 1):+.0f}% per added worker"


def _measure_once(target: Target, config: BenchConfig, script: Path | None) -> Sample:
    if config.warmup_s > 0:
        run_wrk(target.url, duration_s=config.warmup_s, connections=config.connections, threads=config.threads,
                headers=target.headers, script=script)
    before = _cpu(target.server.proc.pid)  # the supervisor and its worker processes
    result = run_wrk(target.url, duration_s=config.duration_s, connections=config.connections,
                     threads=config.threads, headers=target.headers, script=script)
    return Sample(rps=result.rps, p50_ms=result.p50_ms, p99_ms=result.p99_ms, errors=result.errors,
                  requests=result.requests, duration_s=result.duration_s,
                  server_cpu_s=_cpu(target.server.proc.pid) - before)


def run(config: BenchConfig) -> list[Row]:
    gateway_cmd = _gateway_command()
    env = _gateway_env() | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each gateway makes its own under its data dir
    script = config.workdir / "post.lua"
    script.write_text(wrk_script(_body(False)))
    targets: list[Target] = []
    scripts: dict[str, Path | None] = {}
    with ExitStack() as stack:
        port = free_port()
        upstream = stack.enter_context(launched(
            "upstream", [sys.executable, str(BENCH_DIR / "canned_upstream.py"), "--port", str(port)],
            port=port, env=env, log_path=config.workdir / "upstream.log"))
        toml = config.workdir / "gateway.toml"
        toml.write_text(gateway_config(upstream.port))
        for workers in WORKER_COUNTS:
            data_dir = config.workdir / f"gateway-{workers}"
            token = _create_token(gateway_cmd, data_dir, env)
            bearer = {"Authorization": f"Bearer {token}"}
            port = free_port()
            gw = stack.enter_context(launched(
                f"gateway-{workers}", [gateway_cmd, "serve", "--host", "127.0.0.1", "--port", str(port),
                                       "--workers", str(workers), "--no-worker", "--data-dir", str(data_dir),
                                       "--config", str(toml)],
                port=port, env=env, log_path=config.workdir / f"gateway-{workers}.log"))
            status, body = _post(gw.base_url + CHAT_PATH, _body(False), bearer)
            if status != 200 or EXPECT.encode() not in body:
                raise ServerError(f"gateway --workers {workers}: POST {CHAT_PATH} answered {status}: {body[:300]!r}")
            for load, path, display in (("GET /v1/models", MODELS_PATH, MODELS_PATH),
                                        ("proxied chat", CHAT_PATH, f"{CHAT_PATH} -> canned upstream")):
                name = scenario(load, workers)
                targets.append(Target(name, gw, path, display, headers=bearer,
                                      baseline=None if workers == 1 else scenario(load, 1)))
                scripts[name] = script if path == CHAT_PATH else None
            print(f"  gateway --workers {workers}: {gw.base_url} (pid {gw.proc.pid})", file=sys.stderr, flush=True)
        samples: dict[str, list[Sample]] = {t.scenario: [] for t in targets}
        for round_no in range(config.rounds):
            for target in targets if round_no % 2 == 0 else targets[::-1]:
                sample = _measure_once(target, config, scripts[target.scenario])
                samples[target.scenario].append(sample)
                print(f"  round {round_no + 1}/{config.rounds}  {target.scenario:<32} {sample.rps:>9.0f} req/s  "
                      f"p99 {sample.p99_ms:6.2f} ms  errors {sample.errors}  server CPU "
                      f"{sample.server_cpu_percent:3.0f}%", file=sys.stderr, flush=True)
    rows = summarise(SUITE, targets, samples)
    by_name = {row.scenario: row for row in rows}
    for row, target in zip(rows, targets, strict=True):
        base = by_name.get(row.baseline) if row.baseline else None
        if base is not None and base.rps and row.rps is not None:
            row.notes.append(per_worker_note(row.rps, base.rps, int(target.scenario.rsplit(" ", 1)[1])))
        cores = len(os.sched_getaffinity(0))
        row.notes.append(f"wrk -t{config.threads} -c{config.connections}; {cores} cores shared with wrk and the "
                         f"upstream")
    return rows

