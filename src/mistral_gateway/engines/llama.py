"""llama.cpp through xllamacpp: llama-server's slots and continuous batching, in-process.

Generation calls block (releasing the GIL), so they run on this engine's own thread pool, never on the event loop
and never on the pool the database uses. Chat templates and tokenisation go through the in-process server's
loopback listener, which is protected by a random key.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    ChatMessage,
    ContextOverflow,
    Delta,
    EngineBusy,
    EngineError,
    Generation,
    SamplingParams,
)
from mistral_gateway.engines.llama_worker import build_params

__all__ = ["LlamaEngine", "load"]

# OpenMP threads must be pinned or decode on a small VM drops by 2-4x; read when the runtime starts.
os.environ.setdefault("OMP_PROC_BIND", "true")
# Importing xllamacpp with OMP_PROC_BIND pins the importing thread (and threads it starts later) to one CPU:
# remember the real CPU set first, to size thread pools and to undo the pinning after each load.
_CPUS = frozenset(os.sched_getaffinity(0))


class LlamaEngine:
    def __init__(self, entry: ModelEntry, path: Path, *, threads: int, queue_limit: int) -> None:
        if not path.is_file():
            raise EngineError(f"model {entry.id!r}: weights file {path} does not exist")
        self._key = secrets.token_urlsafe(24)
        config = {"path": str(path), "parallel": entry.parallel, "ctx": entry.max_context_length * entry.parallel,
                  "threads": threads, "mmap": entry.mmap, "key": self._key}
        self._server: Any = WorkerProcess(config, entry.id) if entry.isolate else _in_process_server(config)
        self._http = httpx.Client(base_url=self._server.listening_address,
                                  headers={"Authorization": f"Bearer {self._key}"}, timeout=60)
        self.model_id = entry.id
        self.context_length = entry.max_context_length
        self.parallel = entry.parallel
        self._capacity = entry.parallel + queue_limit
        self._inflight = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self._capacity + 2, thread_name_prefix=f"llama-{entry.id}")

    # -- protocol -----------------------------------------------------------------------------------------------
    async def render(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None,
                     *, continue_last: bool = False) -> str:
        body: dict[str, Any] = {"messages": [_message_json(m) for m in messages]}
        if tools:
            body["tools"] = list(tools)
        result = await self._call(self._post, "/apply-template", body)
        return str(result["prompt"])

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        text: list[str] = []
        last = Delta("")
        async for delta in self.stream(prompt, params):
            text.append(delta.text)
            last = delta
        return Generation("".join(text), last.finish_reason or "stop", last.prompt_tokens or 0,
                          last.completion_tokens or 0)

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        self._admit()
        try:
            tokens = await self._call(self._tokenize, prompt)
            budget = self._budget(len(tokens), params.max_tokens)
            completion = 0
            if params.min_tokens > 0:
                # llama-server has no min_tokens: generate the first ones with EOS masked, then continue freely.
                first = min(params.min_tokens, budget)
                head: list[str] = []
                async for delta in self._generate(tokens, params, first, ignore_eos=True):
                    if delta.finish_reason is None:
                        head.append(delta.text)
                        yield delta
                    else:
                        completion = delta.completion_tokens or 0
                if completion >= budget:
                    yield Delta("", "length", len(tokens), completion)
                    return
                tokens = tokens + await self._call(self._tokenize, "".join(head), False)
            async for delta in self._generate(tokens, params, budget - completion, ignore_eos=False):
                if delta.finish_reason is not None:
                    prompt_tokens = len(tokens) - completion if completion else delta.prompt_tokens
                    yield Delta(delta.text, delta.finish_reason, prompt_tokens,
                                (delta.completion_tokens or 0) + completion)
                else:
                    yield delta
        finally:
            self._release()

    # -- internals ----------------------------------------------------------------------------------------------
    def _budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        room = self.context_length - prompt_tokens
        if max_tokens is None:
            if room <= 0:
                raise ContextOverflow(
                    f"the prompt has {prompt_tokens} tokens but {self.model_id} has a context window of "
                    f"{self.context_length} tokens", prompt_tokens=prompt_tokens, context_length=self.context_length)
            return room
        if max_tokens > room:
            raise ContextOverflow(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the context window of "
                f"{self.model_id} ({self.context_length} tokens)", prompt_tokens=prompt_tokens,
                context_length=self.context_length)
        return max_tokens

    async def _generate(self, tokens: list[int], params: SamplingParams, max_tokens: int,
                        *, ignore_eos: bool) -> AsyncIterator[Delta]:
        body = _sampling_body(params) | {"prompt": tokens, "max_tokens": max_tokens, "stream": True,
                                         "ignore_eos": ignore_eos, "cache_prompt": True}
        if max_tokens == 0:
            yield Delta("", "length", len(tokens), 0)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set()  # truthy stops generation: the client went away

        def run() -> None:
            try:
                result = self._server.handle_completions(body, on_chunk)
                if isinstance(result, dict) and "error" in result:
                    loop.call_soon_threadsafe(queue.put_nowait, _engine_error(result["error"]))
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self._pool, run)
        finished = False
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if "error" in item:
                    raise _engine_error(item["error"])
                choice = (item.get("choices") or [{}])[0]
                text = choice.get("text") or ""
                reason = choice.get("finish_reason")
                if reason is None:
                    if text:
                        yield Delta(text)
                    continue
                usage = item.get("usage") or {}
                finished = True
                yield Delta(text, "length" if reason == "length" else "stop", usage.get("prompt_tokens", len(tokens)),
                            usage.get("completion_tokens", 0))
        finally:
            cancelled.set()
            if not finished:
                await asyncio.shield(future)
            else:
                await future

    def _admit(self) -> None:
        with self._lock:
            if self._inflight >= self._capacity:
                raise EngineBusy(f"{self.model_id} is serving {self._inflight} requests (its limit); retry shortly",
                                 retry_after=2.0)
            self._inflight += 1

    def _release(self) -> None:
        with self._lock:
            self._inflight -= 1

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._http.post(path, content=json.dumps(body))
        if response.status_code != 200:
            raise EngineError(f"llama.cpp {path} failed ({response.status_code}): {response.text[:300]}")
        return response.json()

    def _tokenize(self, text: str, add_special: bool = True) -> list[int]:
        result = self._post("/tokenize", {"content": text, "add_special": add_special, "parse_special": True})
        return [int(t) for t in result["tokens"]]

    def close(self) -> None:
        self._http.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._server, "close", None)
        if close is not None:
            close()
        del self._server


def _in_process_server(config: dict[str, Any]) -> Any:
    import xllamacpp

    return xllamacpp.Server(build_params(config))


class WorkerProcess:
    """One model's llama.cpp server in a child process (``engines.llama_worker``): two llama.cpp servers in one
    process slow each other down (measured: SmolLM2 146 -> 100 tok/s with an idle second model), and a child has its
    own OpenMP runtime and GIL. Same ``handle_completions`` surface as the in-process server, over loopback."""

    def __init__(self, config: dict[str, Any], model_id: str) -> None:
        self._proc = subprocess.Popen(  # stdin stays open: the worker exits when it closes (we exit or crash)
            [sys.executable, "-m", "mistral_gateway.engines.llama_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(config) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait(timeout=30)
            raise EngineError(f"model {model_id!r}: the llama.cpp worker exited ({code}) before it was ready")
        self.listening_address = json.loads(line)["address"]
        self._http = httpx.Client(base_url=self.listening_address,
                                  headers={"Authorization": f"Bearer {config['key']}"},
                                  timeout=httpx.Timeout(30.0, read=None))  # a slot may queue a long time

    def handle_completions(self, body: dict[str, Any], callback: Any) -> dict[str, Any] | None:
        """Stream ``/v1/completions``; ``callback`` gets each chunk, a truthy return stops (closing the stream)."""
        with self._http.stream("POST", "/v1/completions", content=json.dumps(body)) as response:
            if response.status_code != 200:
                response.read()
                try:
                    return {"error": response.json().get("error", {"message": response.text})}
                except ValueError:
                    return {"error": {"message": response.text[:300]}}
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                if callback(json.loads(line[6:])):
                    break  # leaving the block closes the connection: llama.cpp stops this slot
        return None

    def close(self) -> None:
        self._http.close()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def _message_json(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [dict(c) for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def _sampling_body(params: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": 0,  # Mistral's API samples with temperature and top_p only
        "min_p": 0.0,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "seed": params.seed if params.seed is not None else -1,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.json_schema is not None:
        body["json_schema"] = params.json_schema
    elif params.grammar is not None:
        body["grammar"] = params.grammar
    return body


def _engine_error(error: dict[str, Any]) -> EngineError:
    if error.get("type") == "exceed_context_size_error":
        return ContextOverflow(str(error.get("message")), prompt_tokens=error.get("n_prompt_tokens"),
                               context_length=error.get("n_ctx"))
    return EngineError(f"llama.cpp: {error.get('message', error)}")


def load(entry: ModelEntry, path: Path | None, settings: Settings) -> LlamaEngine:
    if path is None:
        raise EngineError(f"model {entry.id!r} has neither 'path' nor 'asset' configured")
    threads = entry.threads or len(_CPUS)
    try:
        return LlamaEngine(entry, path, threads=threads, queue_limit=settings.inference_queue_limit)
    finally:
        os.sched_setaffinity(0, _CPUS)  # loading pinned this worker thread to one CPU; later loads need them all
