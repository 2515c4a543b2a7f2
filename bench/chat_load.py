"""Streaming chat load for the ``chat`` suite, in a process of its own. Two modes, one measurement method:

    chat_load.py http --url http://127.0.0.1:PORT --token TOKEN --cpu-pid PID     # through the gateway
    chat_load.py engine --model-id ID --weights FILE                             # the engine in this process

``http`` streams ``POST /v1/chat/completions`` (native dialect, ``stream: true``) with aiohttp; ``engine`` builds the
gateway's own ``LlamaEngine`` (the same xllamacpp ``Server`` parameters, threads and prompt tokens) and calls its
``Server.handle_completions`` directly from N threads, with exactly the body the gateway sends for
``min_tokens = max_tokens = N`` (EOS masked, so both generate exactly N tokens).

After setting up, the process prints ``{"ready": ...}``; it then reads one JSON command per line on stdin and
answers each with one JSON line on stdout (stdin closed: exit):

- ``{"op": "once", "model": M}``: one request to completion (loads the model, checks the token count).
- ``{"op": "run", "model": M, "streams": N, "warmup_s": W, "duration_s": D}``: N closed-loop streams, each sending
  the next request as soon as the previous one ends, for W + D seconds; only the last D seconds (the window) are
  counted; requests in flight at the end are cancelled.

A streamed piece of text is one generated token (llama.cpp streams token by token; a token ending mid-character is
held back and sent with the next one, the same in both modes). ``tok/s`` counts the pieces received in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Server-sent events of the native dialect, compact JSON: a piece of text has a non-empty "content"; the last
# chunk has a non-null "usage".
_CONTENT = b'"content":"'
_EMPTY_CONTENT = b'"content":""'
_USAGE = b'"usage":{'


@dataclass(slots=True)
class Trace:
    """One request: when it was sent, when each piece of text arrived, how it ended."""

    sent: float
    pieces: list[float] = field(default_factory=list)
    completion_tokens: int | None = None  # from the final usage: set when the request completed
    error: str | None = None


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def summary(traces: list[Trace], t0: float, t1: float, cpu_s: float, tokens: int,
            client_cpu_s: float | None = None) -> dict[str, Any]:
    """The window [t0, t1]: pieces received (tokens), per-stream decode rate (gaps between pieces of one request,
    the first piece excluded), time to first piece of the requests sent in it, errors."""
    in_window = 0
    intervals, decode_s = 0, 0.0
    for trace in traces:
        times = [t for t in trace.pieces if t0 <= t <= t1]
        in_window += len(times)
        if len(times) >= 2:
            intervals += len(times) - 1
            decode_s += times[-1] - times[0]
    ttft = [(t.pieces[0] - t.sent) * 1000 for t in traces if t0 <= t.sent < t1 and t.pieces]
    errors = [t.error for t in traces if t.error]
    completed = [t for t in traces if t.completion_tokens is not None and not t.error]
    wrong = [t.completion_tokens for t in completed if t.completion_tokens != tokens]
    if wrong:
        errors.append(f"{len(wrong)} request(s) generated {sorted(set(wrong))} tokens instead of {tokens}")
    pieces = sum(len(t.pieces) for t in completed)
    return {
        "window_s": t1 - t0,
        "tokens": in_window,
        "tok_s": in_window / (t1 - t0) if t1 > t0 else 0.0,
        "decode_tok_s": intervals / decode_s if decode_s > 0 else None,
        "ttft_ms": ttft,
        "ttft_p50_ms": statistics.median(ttft) if ttft else None,
        "requests": len(traces),
        "completed": len(completed),
        "tokens_per_piece": sum(t.completion_tokens or 0 for t in completed) / pieces if pieces else None,
        "errors": len(errors),
        "error_messages": errors[:5],
        "cpu_s": cpu_s,
        "client_cpu_s": client_cpu_s,  # this process (http mode only): what measuring costs the machine
    }


# -- through the gateway ------------------------------------------------------------------------------------------
class HttpLoad:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/") + "/v1/chat/completions"
        self.cpu_pid = args.cpu_pid
        self.tokens = args.tokens
        self.args = args
        self._client: Any = None  # an aiohttp session, made on the running loop

    @property
    def client(self) -> Any:
        # aiohttp, not httpx: this process shares the 2 cores with the server, and httpx's async streaming cost
        # ~260 us of CPU per received token here (aiohttp: a fraction), all of it taken from llama.cpp's threads.
        import aiohttp

        if self._client is None:
            self._client = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.args.token}", "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=300.0, connect=10.0), trust_env=False,
                connector=aiohttp.TCPConnector(limit=64))
        return self._client

    def body(self, model: str) -> bytes:
        return json.dumps({
            "model": model, "stream": True, "temperature": 0, "top_p": 1, "random_seed": self.args.seed,
            "max_tokens": self.tokens, "min_tokens": self.tokens,
            "messages": [{"role": "user", "content": self.args.prompt}],
        }).encode()

    async def request(self, body: bytes, trace: Trace) -> None:
        """Stream one completion. Cheap on CPU on purpose (raw bytes, no JSON per piece): the client shares the
        machine with the server, and every microsecond it spends per token is taken from llama.cpp's threads."""
        try:
            async with self.client.post(self.url, data=body) as response:
                if response.status != 200:
                    trace.error = f"HTTP {response.status}: {(await response.read())[:300]!r}"
                    return
                buffer = b""
                async for data in response.content.iter_any():
                    now = time.perf_counter()
                    buffer += data
                    *events, buffer = buffer.split(b"\n\n")
                    for event in events:
                        if not event.startswith(b"data:"):
                            continue
                        if _CONTENT in event and _EMPTY_CONTENT not in event:
                            trace.pieces.append(now)
                        if _USAGE in event:
                            chunk = json.loads(event[5:])
                            trace.completion_tokens = (chunk.get("usage") or {}).get("completion_tokens")
            if trace.completion_tokens is None:
                trace.error = "the stream ended without usage"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            trace.error = f"{type(exc).__name__}: {exc}"

    async def once(self, model: str) -> dict[str, Any]:
        trace = Trace(time.perf_counter())
        await self.request(self.body(model), trace)
        end = time.perf_counter()
        return summary([trace], trace.sent, end, 0.0, self.tokens)

    async def run(self, model: str, streams: int, warmup_s: float, duration_s: float) -> dict[str, Any]:
        body = self.body(model)
        traces: list[Trace] = []

        async def stream() -> None:
            while True:
                trace = Trace(time.perf_counter())
                traces.append(trace)
                await self.request(body, trace)

        start = time.perf_counter()
        tasks = [asyncio.create_task(stream()) for _ in range(streams)]
        try:
            t0 = start + warmup_s
            await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
            cpu0, own0 = cpu_seconds(self.cpu_pid), time.process_time()
            t1 = t0 + duration_s
            await asyncio.sleep(max(0.0, t1 - time.perf_counter()))
            cpu1, own1 = cpu_seconds(self.cpu_pid), time.process_time()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return summary(traces, t0, t1, cpu1 - cpu0, self.tokens, own1 - own0)

    async def serve(self) -> None:
        reply({"ready": True, "mode": "http", "pid": os.getpid()})
        loop = asyncio.get_running_loop()
        try:
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                command = json.loads(line)
                if command["op"] == "once":
                    reply(await self.once(command["model"]))
                else:
                    reply(await self.run(command["model"], command["streams"], command["warmup_s"],
                                         command["duration_s"]))
        finally:
            if self._client is not None:
                await self._client.close()


# -- the engine in this process -----------------------------------------------------------------------------------
class EngineLoad:
    def __init__(self, args: argparse.Namespace) -> None:
        from mistral_gateway.config import Settings, default_models
        from mistral_gateway.engines import llama  # sets OMP_PROC_BIND before xllamacpp loads, as in the gateway
        from mistral_gateway.engines.base import ChatMessage, SamplingParams

        # The baseline is the engine itself, in this process (no worker process, no loopback hop).
        entry = next(m for m in default_models() if m.id == args.model_id).model_copy(update={"isolate": False})
        self.tokens = args.tokens
        settings = Settings()
        cpus = os.sched_getaffinity(0)
        threads = entry.threads or len(cpus)  # as llama.load computes it, before xllamacpp (OpenMP) loads
        started = time.perf_counter()
        self.engine = llama.load(entry, Path(args.weights), settings)  # what the gateway's EngineManager calls
        load_s = time.perf_counter() - started
        # With OMP_PROC_BIND, loading OpenMP pins the loading thread to one CPU. The gateway loads models on a worker
        # thread, and its event loop (whose executor threads call handle_completions) stays unpinned: do the same.
        pinned = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus)
        # The gateway's path for one user message: the model's chat template, then tokenize with special tokens.
        prompt = asyncio.run(self.engine.render([ChatMessage("user", args.prompt)]))
        prompt_tokens = self.engine._tokenize(prompt)
        params = SamplingParams(max_tokens=self.tokens, min_tokens=self.tokens, temperature=0.0, top_p=1.0,
                                seed=args.seed)
        # LlamaEngine.stream with min_tokens == max_tokens: one generation of max_tokens, EOS masked.
        self.body = llama._sampling_body(params) | {"prompt": prompt_tokens, "max_tokens": self.tokens,
                                                    "stream": True, "ignore_eos": True, "cache_prompt": True}
        self.info = {"ready": True, "mode": "engine", "pid": os.getpid(), "model": entry.id, "load_s": load_s,
                     "n_parallel": entry.parallel, "n_ctx": entry.max_context_length * entry.parallel,
                     "threads": threads, "prompt_tokens": len(prompt_tokens),
                     "omp_proc_bind": os.environ.get("OMP_PROC_BIND"),
                     "loading_thread_cpus_after_load": pinned}

    def request(self, trace: Trace, stop: threading.Event) -> None:
        def on_chunk(chunk: dict[str, Any]) -> bool:
            now = time.perf_counter()
            if "error" in chunk:
                trace.error = str(chunk["error"])[:300]
                return True
            choice = (chunk.get("choices") or [{}])[0]
            if choice.get("text"):
                trace.pieces.append(now)
            if choice.get("finish_reason") is not None:
                trace.completion_tokens = (chunk.get("usage") or {}).get("completion_tokens")
            return stop.is_set()

        try:
            result = self.engine.server.handle_completions(self.body, on_chunk)
            if isinstance(result, dict) and "error" in result:
                trace.error = str(result["error"])[:300]
        except Exception as exc:
            trace.error = f"{type(exc).__name__}: {exc}"

    def once(self) -> dict[str, Any]:
        trace = Trace(time.perf_counter())
        self.request(trace, threading.Event())
        return summary([trace], trace.sent, time.perf_counter(), 0.0, self.tokens)

    def run(self, streams: int, warmup_s: float, duration_s: float) -> dict[str, Any]:
        traces: list[Trace] = []
        lock = threading.Lock()
        stop = threading.Event()

        def stream() -> None:
            while not stop.is_set():
                trace = Trace(time.perf_counter())
                with lock:
                    traces.append(trace)
                self.request(trace, stop)
                if stop.is_set() and trace.completion_tokens is not None and trace.pieces \
                        and trace.pieces[-1] >= t1:
                    trace.completion_tokens = None  # finished after the window: counted like a cancelled one

        start = time.perf_counter()
        t0, t1 = start + warmup_s, start + warmup_s + duration_s
        workers = [threading.Thread(target=stream, daemon=True) for _ in range(streams)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(max(0.0, t0 - time.perf_counter()))
            cpu0 = time.process_time()  # this process: every thread, llama.cpp's included
            time.sleep(max(0.0, t1 - time.perf_counter()))
            cpu1 = time.process_time()
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        return summary(traces, t0, t1, cpu1 - cpu0, self.tokens)

    def serve(self) -> None:
        reply(self.info)
        try:
            for line in sys.stdin:
                command = json.loads(line)
                if command["op"] == "once":
                    reply(self.once())
                else:
                    reply(self.run(command["streams"], command["warmup_s"], command["duration_s"]))
        finally:
            self.engine.close()


def reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("http", "engine"):
        p = sub.add_parser(name)
        p.add_argument("--tokens", type=int, default=128, help="tokens per request (min = max)")
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--prompt", default=DEFAULT_PROMPT)
        if name == "http":
            p.add_argument("--url", required=True)
            p.add_argument("--token", required=True)
            p.add_argument("--cpu-pid", type=int, required=True, help="the server whose CPU time is measured")
        else:
            p.add_argument("--model-id", required=True, help="a model of the default catalog")
            p.add_argument("--weights", required=True)
    args = parser.parse_args()
    if args.mode == "http":
        async def serve_http() -> None:
            await HttpLoad(args).serve()

        try:
            import uvloop  # the same event loop as the server's; less CPU per piece than asyncio's
        except ImportError:
            asyncio.run(serve_http())
        else:
            uvloop.run(serve_http())
    else:
        EngineLoad(args).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
