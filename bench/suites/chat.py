"""Suite "chat": streamed chat completions on the real bundled llama.cpp models, through the gateway and, side by
side in the same run, on the same engine called in-process (the baseline).

For each chat model of the default catalog (SmolLM2-135M, then Qwen2.5-Coder-1.5B), 1, 4 and 8 concurrent streams
of 128-token requests (temperature 0, fixed seed, ``min_tokens = max_tokens = 128`` so EOS never ends one early):

- ``gateway``: ``POST /v1/chat/completions`` (native dialect, ``stream: true``) on a ``mistral-gateway serve``
  subprocess, from ``bench/chat_load.py http`` (aiohttp, asyncio) in its own process.
- ``engine``: ``bench/chat_load.py engine`` in its own process: the gateway's ``LlamaEngine`` built by the gateway's
  own loader (same weights file, n_parallel, n_ctx, threads, OMP_PROC_BIND, prompt tokens) and its xllamacpp
  ``Server.handle_completions`` called directly from N threads with the body the gateway sends.

Targets: single stream, gateway decode tok/s >= 0.95x the engine's and time to first token <= 10 ms more;
SmolLM2 at 8 streams >= 2x its single stream; the 1.5B model at 4 streams >= 1.25x its single stream (both through
the gateway); the gateway's peak RSS (VmHWM) with the three default models loaded <= 2.5 GB. llama.cpp's own
``llama-server --threads 2 --parallel 8`` figures measured on the reference machine are printed next to the
gateway rows as anchors (reference figures, not the baseline).
"""

from __future__ import annotations

import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row
from servers import Server, ServerError, free_port, launched

from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["MAX_RSS_GB", "MAX_TTFT_OVERHEAD_MS", "MIN_DECODE_RATIO", "MODELS", "SINGLE_STREAM_ROUNDS", "STREAMS",
           "TOKENS", "paired_ratios", "run"]

SUITE = "chat"
TOKENS = 128
STREAMS = (1, 4, 8)
MIN_DECODE_RATIO = 0.95
MAX_TTFT_OVERHEAD_MS = 10.0
MAX_RSS_GB = 2.5
SINGLE_STREAM_ROUNDS = 6  # rounds of the single-stream engine/gateway pair (the others: --rounds)
EMBEDDING_MODEL = "mistral-embed"
BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
LOAD_SCRIPT = BENCH_DIR / "chat_load.py"


@dataclass(frozen=True, slots=True)
class ChatModel:
    id: str  # in the default catalog
    label: str
    anchors: dict[int, float]  # streams -> llama-server tok/s on the reference machine
    scaling: tuple[int, float]  # (streams, minimum gateway tok/s at that many streams / at one stream)


MODELS = (
    ChatModel("smollm2-135m-instruct", "smollm2-135m", {1: 107.0, 4: 148.0, 8: 222.0}, (8, 2.0)),
    ChatModel("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b", {1: 31.4, 4: 39.8, 8: 35.4}, (4, 1.25)),
)


@dataclass(frozen=True, slots=True)
class ChatSample:
    """One measured window (after its warm-up) of one target in one round."""

    tok_s: float  # tokens received in the window / its length, all streams together
    decode_tok_s: float | None  # per stream: tokens / time between a request's consecutive tokens (no TTFT)
    ttft_ms: list[float]  # requests sent in the window
    requests: int
    completed: int
    tokens: int
    errors: int
    error_messages: list[str]
    duration_s: float
    server_cpu_s: float
    client_cpu_s: float | None  # the load generator's own CPU time (gateway targets)

    @property
    def client_cpu_us_per_token(self) -> float | None:
        return self.client_cpu_s * 1e6 / self.tokens if self.client_cpu_s is not None and self.tokens else None

    @property
    def cpu_us_per_request(self) -> float | None:
        """Per token here (the report's per-unit CPU column)."""
        return self.server_cpu_s * 1e6 / self.tokens if self.tokens else None

    @property
    def server_cpu_percent(self) -> float:
        return 100.0 * self.server_cpu_s / self.duration_s if self.duration_s else 0.0


# -- the load processes -------------------------------------------------------------------------------------------
@dataclass
class LoadProcess:
    """``chat_load.py`` in its own process: JSON commands on its stdin, one JSON line back on its stdout."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)
    _buffer: bytes = b""

    def read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerError(f"{self.name} did not answer within {timeout_s:.0f}s:\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                raise ServerError(f"{self.name} exited ({self.proc.wait()}):\n{self.log_tail()}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()
        return self.read(timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def load_process(name: str, args: list[str], *, log_path: Path, env: dict[str, str],
                 startup_timeout_s: float = 120.0) -> Iterator[LoadProcess]:
    """Start ``chat_load.py ARGS``, wait for its ready line, yield; always stop it (stdin closed, then signals)."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(LOAD_SCRIPT), *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=env)
    load = LoadProcess(name, proc, log_path)
    try:
        load.info = load.read(startup_timeout_s)
        yield load
    finally:
        if proc.stdin is not None:
            with suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


# -- helpers ------------------------------------------------------------------------------------------------------
def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _weights_dir() -> Path:
    """Where the gateway finds the bundled weights already assembled: $MISTRAL_GATEWAY_WEIGHTS_PATH, else the
    default data dir's (``make serve`` / ``mistral-gateway models install`` from the repository)."""
    configured = os.environ.get("MISTRAL_GATEWAY_WEIGHTS_PATH")
    return Path(configured) if configured else REPO_DIR / ".mistral-gateway" / "weights"


def _weights(model_id: str, weights_dir: Path) -> Path:
    from mistral_gateway.config import default_models
    from mistral_gateway.engines.assets import AssetError, resolve_asset

    entry = next(m for m in default_models() if m.id == model_id)
    assert entry.asset is not None
    try:
        return resolve_asset(entry.asset, weights_dir, progress=_log)
    except AssetError as err:
        raise ServerError(f"weights for {model_id}: {err}") from err


def _post_json(server: Server, path: str, body: dict[str, Any], token: str, timeout: float = 300.0) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        server.base_url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as err:
        raise ServerError(f"{server.name} answered POST {path} with {err.code}: {err.read()[:300]!r}") from err


def _memory_kb(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of the server and every process under it (llama.cpp models run in worker processes),
    summed: the sum of per-process peaks bounds the peak of the whole from above."""
    values = {"VmHWM": 0, "VmRSS": 0}
    for proc in _tree(pid):
        try:
            lines = Path(f"/proc/{proc}/status").read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            key, _, rest = line.partition(":")
            if key in values:
                values[key] += int(rest.split()[0])
    return values


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
    return pids


def _gb(kb: int) -> float:
    return kb * 1024 / 1e9


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _sample(result: dict[str, Any], duration_s: float) -> ChatSample:
    return ChatSample(tok_s=result["tok_s"], decode_tok_s=result["decode_tok_s"], ttft_ms=result["ttft_ms"],
                      requests=result["requests"], completed=result["completed"], tokens=result["tokens"],
                      errors=result["errors"], error_messages=result["error_messages"], duration_s=duration_s,
                      server_cpu_s=result["cpu_s"], client_cpu_s=result.get("client_cpu_s"))


def _check_once(name: str, result: dict[str, Any]) -> None:
    if result["errors"] or result["completed"] != 1:
        raise ServerError(f"{name}: the first request failed: {result['error_messages']}")


# -- measurement --------------------------------------------------------------------------------------------------
def _scenario(model: ChatModel, kind: str, streams: int) -> str:
    what = "gateway" if kind == "gateway" else "engine in-process"
    return f"{model.label} {streams} stream{'s' if streams > 1 else ''} {what}"


def _measure(model: ChatModel, loads: dict[str, LoadProcess],
             config: BenchConfig) -> dict[tuple[str, int], list[ChatSample]]:
    """``config.rounds`` rounds over every target (ABBA order: drift hits engine and gateway alike), then more rounds
    of the single-stream pair alone, up to ``SINGLE_STREAM_ROUNDS``: its decode ratio is a check within a few
    percent, and this VM's speed drifts by ~10% between minutes, so it is judged on several adjacent pairs."""
    targets = [(kind, n) for n in STREAMS for kind in ("engine", "gateway")]
    samples: dict[tuple[str, int], list[ChatSample]] = {t: [] for t in targets}
    timeout = config.warmup_s + config.duration_s + 180.0  # + cancelled requests draining, queued ones included
    rounds = max(config.rounds, SINGLE_STREAM_ROUNDS)
    for round_no in range(rounds):
        these = targets if round_no < config.rounds else targets[:2]
        for kind, streams in these if round_no % 2 == 0 else list(reversed(these)):
            result = loads[kind].ask({"op": "run", "model": model.id, "streams": streams,
                                      "warmup_s": config.warmup_s, "duration_s": config.duration_s}, timeout)
            sample = _sample(result, config.duration_s)
            samples[(kind, streams)].append(sample)
            ttft = statistics.median(sample.ttft_ms) if sample.ttft_ms else float("nan")
            decode = f"{sample.decode_tok_s:6.1f}" if sample.decode_tok_s is not None else "     -"
            _log(f"  round {round_no + 1}/{rounds}  {_scenario(model, kind, streams):<42} "
                 f"{sample.tok_s:7.1f} tok/s  decode/stream {decode} tok/s  TTFT p50 {ttft:7.1f} ms  "
                 f"requests {sample.completed}/{sample.requests}  errors {sample.errors}  "
                 f"CPU {sample.server_cpu_percent:3.0f}%")
            for message in sample.error_messages:
                _log(f"    error: {message}")
            time.sleep(0.5)  # let cancelled generations stop before the next target starts
    return samples


def paired_ratios(gateway: list[ChatSample], engine: list[ChatSample]) -> list[float]:
    """Gateway decode tok/s over the engine's in the same round (adjacent windows), round by round."""
    return [g.decode_tok_s / e.decode_tok_s for g, e in zip(gateway, engine, strict=True)
            if g.decode_tok_s and e.decode_tok_s]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _row(model: ChatModel, kind: str, streams: int, runs: list[ChatSample], url: str,
         baseline: str | None) -> Row:
    ttft = [t for s in runs for t in s.ttft_ms]
    return Row(
        suite=SUITE, scenario=_scenario(model, kind, streams), url=url,
        rps=statistics.median(s.tok_s for s in runs),
        p50_ms=_percentile(ttft, 50), p99_ms=_percentile(ttft, 99),
        errors=sum(s.errors for s in runs),
        cpu_us_per_request=_median([s.cpu_us_per_request for s in runs]),
        server_cpu_percent=statistics.median(s.server_cpu_percent for s in runs),
        samples=runs,  # type: ignore[arg-type]
        baseline=baseline, unit="tok/s",
    )


def _model_rows(model: ChatModel, samples: dict[tuple[str, int], list[ChatSample]]) -> list[Row]:
    rows: dict[tuple[str, int], Row] = {}
    for streams in STREAMS:
        engine = _row(model, "engine", streams, samples[("engine", streams)],
                      "xllamacpp Server.handle_completions (in-process)", None)
        gateway = _row(model, "gateway", streams, samples[("gateway", streams)],
                       "POST /v1/chat/completions (native, stream)", engine.scenario)
        if engine.rps > 0:
            gateway.ratio = gateway.rps / engine.rps
        rows[("engine", streams)], rows[("gateway", streams)] = engine, gateway

    # single stream: decode rate and time to first token against the engine, judged on adjacent pairs of windows
    gw1, eng1 = rows[("gateway", 1)], rows[("engine", 1)]
    gw_decode = _median([s.decode_tok_s for s in gw1.samples])
    eng_decode = _median([s.decode_tok_s for s in eng1.samples])
    pairs = paired_ratios(gw1.samples, eng1.samples)  # type: ignore[arg-type]
    ratio = statistics.median(pairs) if pairs else None
    gw1.checks.append(Check(
        "decode tok/s vs engine", f">= {MIN_DECODE_RATIO:g}x",
        f"{ratio:.2f}x (median of {len(pairs)} paired rounds; medians {gw_decode:.1f} vs {eng_decode:.1f})"
        if ratio is not None and gw_decode and eng_decode else "n/a",
        ratio is not None and ratio >= MIN_DECODE_RATIO))
    if pairs:
        gw1.notes.append("paired decode ratios: " + " ".join(f"{r:.2f}" for r in pairs))
    overhead = gw1.p50_ms - eng1.p50_ms if gw1.p50_ms is not None and eng1.p50_ms is not None else None
    gw1.checks.append(Check(
        "TTFT overhead (p50)", f"<= {MAX_TTFT_OVERHEAD_MS:g} ms",
        f"{overhead:+.1f} ms ({gw1.p50_ms:.1f} vs {eng1.p50_ms:.1f})" if overhead is not None else "n/a",
        overhead is not None and overhead <= MAX_TTFT_OVERHEAD_MS))

    # concurrency: aggregate tok/s at N streams over one stream, through the gateway
    for streams in STREAMS[1:]:
        for kind in ("engine", "gateway"):
            row, single = rows[(kind, streams)], rows[(kind, 1)]
            scale = row.rps / single.rps if single.rps else None
            n, minimum = model.scaling
            if kind == "gateway" and streams == n:
                row.checks.append(Check(f"{n} streams vs 1", f">= {minimum:g}x",
                                        f"{scale:.2f}x" if scale is not None else "n/a",
                                        scale is not None and scale >= minimum))
            elif scale is not None:
                row.notes.append(f"{scale:.2f}x its 1 stream")
    for streams in STREAMS:
        anchor = model.anchors.get(streams)
        row = rows[("gateway", streams)]
        if anchor and row.rps is not None:
            row.notes.append(f"llama-server anchor {anchor:g} tok/s ({row.rps / anchor:.2f}x)")
        client = _median([s.client_cpu_us_per_token for s in samples[("gateway", streams)]])
        if client is not None:
            row.notes.append(f"client CPU {client:.0f} us/token")
    return [rows[(kind, n)] for n in STREAMS for kind in ("engine", "gateway")]


def _rss_row(gateway: Server, after_load: dict[str, int], embeddings: str) -> Row:
    end = _memory_kb(gateway.proc.pid)
    peak = end["VmHWM"]
    return Row(
        suite=SUITE, scenario="peak RSS, server + model workers", url=f"/proc/{gateway.proc.pid}/status",
        rps=None, p50_ms=None, p99_ms=None, errors=0, cpu_us_per_request=None, server_cpu_percent=None, samples=[],
        unit="", checks=[Check("peak RSS", f"<= {MAX_RSS_GB:g} GB", f"{_gb(peak):.2f} GB", _gb(peak) <= MAX_RSS_GB)],
        notes=[f"after loading: VmHWM {_gb(after_load['VmHWM']):.2f} GB, VmRSS {_gb(after_load['VmRSS']):.2f} GB",
               f"end of suite: VmRSS {_gb(end['VmRSS']):.2f} GB", embeddings],
    )


def run(config: BenchConfig) -> list[Row]:
    gateway_cmd = _gateway_command()
    env = _gateway_env()
    weights_dir = _weights_dir()
    weights = {m.id: _weights(m.id, weights_dir) for m in MODELS}
    env["MISTRAL_GATEWAY_WEIGHTS_PATH"] = str(weights_dir)
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway_cmd, data_dir, env)
    rows: list[Row] = []

    with ExitStack() as stack:
        port = free_port()
        gw = stack.enter_context(launched(
            "gateway", [gateway_cmd, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
            port=port, env=env, log_path=config.workdir / "gateway.log"))
        http = stack.enter_context(load_process(
            "chat load generator", ["http", "--url", gw.base_url, "--token", token, "--cpu-pid", str(gw.proc.pid),
                                    "--tokens", str(TOKENS)],
            log_path=config.workdir / "load-http.log", env=env))
        _log(f"  gateway {gw.base_url} (pid {gw.proc.pid}), load generator pid {http.proc.pid}, "
             f"weights {weights_dir}")

        # Load the default models with one request each (as a user would), then read the peak RSS.
        for model in MODELS:
            started = time.perf_counter()
            result = http.ask({"op": "once", "model": model.id}, timeout_s=300)
            _check_once(f"gateway {model.id}", result)
            _log(f"  loaded {model.id}: first request {time.perf_counter() - started:.1f} s")
        try:
            started = time.perf_counter()
            _post_json(gw, "/v1/embeddings", {"model": EMBEDDING_MODEL, "input": ["warm up the embeddings model"]},
                       token)
            embeddings = f"{EMBEDDING_MODEL} loaded ({time.perf_counter() - started:.1f} s)"
        except ServerError as err:
            embeddings = f"{EMBEDDING_MODEL} NOT loaded: {str(err)[:120]}"
        _log(f"  {embeddings}")
        after_load = _memory_kb(gw.proc.pid)
        _log(f"  gateway after loading: VmHWM {_gb(after_load['VmHWM']):.2f} GB")

        for model in MODELS:
            with load_process(f"engine baseline {model.id}",
                              ["engine", "--model-id", model.id, "--weights", str(weights[model.id]),
                               "--tokens", str(TOKENS)],
                              log_path=config.workdir / f"engine-{model.label}.log", env=env) as engine:
                info = engine.info
                _log(f"  engine baseline {model.id} (pid {engine.proc.pid}): n_parallel {info['n_parallel']}, "
                     f"n_ctx {info['n_ctx']}, threads {info['threads']}, prompt {info['prompt_tokens']} tokens, "
                     f"loaded in {info['load_s']:.1f} s")
                _check_once(f"engine {model.id}", engine.ask({"op": "once"}, timeout_s=300))
                samples = _measure(model, {"engine": engine, "gateway": http}, config)
            rows += _model_rows(model, samples)
        rows.append(_rss_row(gw, after_load, embeddings))
    return rows
