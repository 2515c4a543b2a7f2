"""llama.cpp through xllamacpp: llama-server's slots and continuous batching.

Each model's llama.cpp server runs in a worker process (``engines.worker_process``; restarted when it dies) or, with
``isolate: false``, in this process. Chat templates and tokenisation go through its loopback listener (protected by
a random key) with blocking calls, on this engine's own thread pool (never the event loop, never the database's
pool). A worker's streamed completions are read on the event loop (``engines.loopback_stream``: no thread hand-off
per token); the in-process server's native call blocks, so it runs on the pool too.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    ChatMessage,
    ContextOverflow,
    Delta,
    EngineBusy,
    EngineError,
    EngineUnavailable,
    Generation,
    SamplingParams,
)
from mistral_gateway.engines.multimodal import MediaPath, media_marker
from mistral_gateway.engines.pieces import PIECE_CHARS, markers_of, tokenize_in_pieces
from mistral_gateway.engines.worker_process import InProcessServer, Supervisor, WorkerProcess

__all__ = ["LlamaEngine", "load"]

_RENDERED_KEPT = 64  # rendered prompts whose tokens wait for their stream() call
# Starts one llama.cpp server from its config and the model id (tests inject fakes; default: per ``entry.isolate``).
ServerFactory = Callable[[dict[str, Any], str], Any]


class LlamaEngine:
    def __init__(self, entry: ModelEntry, path: Path, *, threads: int, queue_limit: int,
                 mmproj: Path | None = None, server_factory: ServerFactory | None = None,
                 clock: Callable[[], float] = time.monotonic, lora: Path | None = None) -> None:
        if not path.is_file():
            raise EngineError(f"model {entry.id!r}: weights file {path} does not exist")
        self._key = secrets.token_urlsafe(24)
        capacity = entry.parallel + queue_limit
        config = {"path": str(path), "parallel": entry.parallel, "ctx": entry.max_context_length * entry.parallel,
                  "threads": threads, "mmap": entry.mmap, "ubatch": entry.ubatch,
                  "kv": entry.kv_cache_type, "key": self._key, "http_threads": _http_threads(capacity)}
        if lora is not None:  # a GGUF LoRA adapter (training.lora_export) applied to every request at scale 1
            if not lora.is_file():
                raise EngineError(f"model {entry.id!r}: LoRA adapter {lora} does not exist")
            config["lora"] = str(lora)
        marker = None
        if mmproj is not None:  # a projector: prompts go as text with images (engines.multimodal), not as tokens
            if not mmproj.is_file():
                raise EngineError(f"model {entry.id!r}: multimodal projector {mmproj} does not exist")
            marker = media_marker(isolated=entry.isolate)
            config |= {"mmproj": str(mmproj), "marker": marker}
        server = server_factory or (WorkerProcess if entry.isolate else InProcessServer)
        self._servers = Supervisor(lambda: server(config, entry.id), entry.id, clock=clock)
        self.model_id = entry.id
        self.context_length = entry.max_context_length
        self.parallel = entry.parallel
        self._capacity = capacity
        self._inflight = 0
        self._lock = threading.Lock()
        self._rendered: dict[str, list[int]] = {}  # prompt -> its tokens, from render() for the stream() after it
        self._markers: list[str] | None = None  # the chat template's special tokens, found on the first long prompt
        self._pool = ThreadPoolExecutor(max_workers=self._capacity + 2, thread_name_prefix=f"llama-{entry.id}")
        self._media = None if marker is None else MediaPath(
            marker, self.model_id, self.context_length, post=lambda path, body: self._call(self._post, path, body),
            chunks=self._chunks, sampling=_sampling_body, message_json=_message_json)

    @property
    def server(self) -> Any:
        """The current llama.cpp server (a ``WorkerProcess`` has the ``pid``); it may be dead until the next call."""
        return self._servers.server

    # -- protocol -----------------------------------------------------------------------------------------------
    async def render(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None,
                     *, continue_last: bool = False) -> str:
        if self._media is not None:
            return await self._media.render(messages, tools)
        if any(m.images for m in messages):
            raise EngineError(f"model {self.model_id!r} has no multimodal projector: it cannot read images")
        body: dict[str, Any] = {"messages": [_message_json(m) for m in messages]}
        if tools:
            body["tools"] = list(tools)
        prompt, tokens = await self._call(self._render_and_tokenize, body)
        with self._lock:  # stream() is nearly always next: it then needs neither a thread hop nor a /tokenize call
            self._rendered[prompt] = tokens
            while len(self._rendered) > _RENDERED_KEPT:
                self._rendered.pop(next(iter(self._rendered)))
        return prompt

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
            if self._media is not None:
                async for delta in self._media.stream(prompt, params):
                    yield delta
                return
            with self._lock:
                tokens = self._rendered.pop(prompt, None)
            if tokens is None:  # not rendered here (FIM), or rendered long ago
                tokens = await self._call(self._prompt_tokens, prompt)
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
        # A seeded request evaluates its whole prompt every time: reusing a cached prefix evaluates only the tail, in
        # a smaller batch whose kernels round differently (the 1.5B model's first seeded answer differed from every
        # later one, issue 9). Costs one prompt evaluation, on seeded requests only.
        body = _sampling_body(params) | {"prompt": tokens, "max_tokens": max_tokens, "stream": True,
                                         "ignore_eos": ignore_eos, "cache_prompt": params.seed is None}
        if max_tokens == 0:
            yield Delta("", "length", len(tokens), 0)
            return
        server = self._servers.server
        chunks = self._native_chunks(body) if server.native else self._chunks(body)
        finished = False
        try:
            async for item in chunks:
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
            if not finished:
                raise EngineError(f"model {self.model_id!r}: the llama.cpp stream ended before the generation did")
        finally:
            await chunks.aclose()  # early: closes the connection, which stops the slot

    async def _chunks(self, body: dict[str, Any], path: str = "/v1/completions") -> AsyncIterator[dict[str, Any]]:
        """The worker's stream, read on the event loop. A worker found dead before any output is replaced and the
        request sent once more; after output, its death is the caller's error (EngineUnavailable)."""
        for attempt in (0, 1):
            server = self._servers.server
            if not server.alive():
                server = await self._call(self._servers.current)  # may start a new worker: blocking
            delivered = False
            try:
                async for chunk in server.completions(body, path):
                    delivered = True
                    yield chunk
                return
            except EngineUnavailable:
                if delivered or attempt:
                    raise

    async def _native_chunks(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The in-process server's blocking call on a pool thread, its chunks handed over to the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        cancelled, delivered = threading.Event(), threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            delivered.set()
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set()  # truthy stops generation: the client went away

        def run() -> None:
            try:
                result = self._on_server(lambda server: server.handle_completions(body, on_chunk),
                                         retry=lambda: not delivered.is_set())
                if isinstance(result, dict) and "error" in result:
                    loop.call_soon_threadsafe(queue.put_nowait, result)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self._pool, run)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(future)

    def slot_usage(self) -> tuple[int, int, int]:
        """(slots busy, slots, requests waiting for one): read at scrape time for /metrics."""
        inflight = self._inflight  # one int read: no lock needed for a gauge
        return min(inflight, self.parallel), self.parallel, max(0, inflight - self.parallel)

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

    def _on_server(self, call: Callable[[Any], Any], retry: Callable[[], bool] = lambda: True) -> Any:
        """``call(server)``; if the worker turns out dead before the call did anything, once more on a new one."""
        try:
            return call(self._servers.current())
        except EngineUnavailable:
            if not retry():
                raise
            return call(self._servers.current())

    def _render_and_tokenize(self, body: dict[str, Any]) -> tuple[str, list[int]]:
        """The chat template applied, and its tokens: both loopback calls in one trip to a pool thread."""
        result = self._post("/apply-template", body)
        if not isinstance(result, dict) or not isinstance(result.get("prompt"), str):
            raise EngineError(f"model {self.model_id!r}: llama.cpp /apply-template answered {str(result)[:200]}")
        return result["prompt"], self._prompt_tokens(result["prompt"])

    def _prompt_tokens(self, prompt: str) -> list[int]:
        """A whole prompt's tokens; a long one in pieces, refused once it cannot fit (``engines.pieces``)."""
        if len(prompt) <= PIECE_CHARS:
            return self._tokenize(prompt)
        return tokenize_in_pieces(prompt, self._special_markers(), self._tokenize, limit=self.context_length,
                                  model_id=self.model_id)

    def _special_markers(self) -> list[str]:
        """The special tokens the chat template writes, from a two-message sample (once; a few small calls)."""
        if self._markers is None:
            try:
                sample = self._post("/apply-template", {"messages": [{"role": "user", "content": "a"},
                                                                     {"role": "assistant", "content": "b"}]})["prompt"]
                pieces = self._post("/tokenize", {"content": sample, "add_special": False, "parse_special": True,
                                                  "with_pieces": True})["tokens"]
                plain = lambda text: self._post("/tokenize", {"content": text, "parse_special": False})["tokens"]  # noqa: E731
                self._markers = markers_of([p["piece"] for p in pieces if isinstance(p.get("piece"), str)], plain)
            except (KeyError, TypeError, AttributeError) as exc:
                raise EngineError(f"model {self.model_id!r}: llama.cpp answered the special-token probe "
                                  f"unexpectedly ({type(exc).__name__}: {exc})") from exc
        return self._markers

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._on_server(lambda server: server.post(path, body))

    def _tokenize(self, text: str, add_special: bool = True) -> list[int]:
        result = self._post("/tokenize", {"content": text, "add_special": add_special, "parse_special": True})
        try:
            return [int(t) for t in result["tokens"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"model {self.model_id!r}: llama.cpp /tokenize answered {str(result)[:200]}") from exc

    def close(self) -> None:
        """Stops the model's server; a worker process is reaped (killed if it does not exit within 10 s)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._servers.close()


def _http_threads(capacity: int) -> int:
    """llama-server HTTP threads: one per connection we may hold (each admitted request's stream, each pool thread's
    blocking call: ``capacity + 2`` of them) and a retry's fresh connection, so no request waits for a thread."""
    return 2 * capacity + 4


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
    # OpenMP threads must be pinned or decode on a small VM drops by 2-4x; read when the runtime starts (at the
    # first in-process load: set here, not at import, so importing this module changes nothing).
    os.environ.setdefault("OMP_PROC_BIND", "true")
    # Importing xllamacpp with OMP_PROC_BIND pins the importing thread (and threads it starts later) to one CPU:
    # remember the real CPU set first, to size thread pools and to undo the pinning after the load.
    cpus = frozenset(os.sched_getaffinity(0))
    threads = entry.threads or len(cpus)
    try:
        lora = Path(entry.lora).expanduser() if entry.lora else None  # a fine-tuned model's adapter
        return LlamaEngine(entry, path, threads=threads, queue_limit=settings.inference_queue_limit,
                           mmproj=_projector(entry, settings), lora=lora)
    finally:
        os.sched_setaffinity(0, cpus)  # loading pinned this worker thread to one CPU; later loads need them all


def _projector(entry: ModelEntry, settings: Settings) -> Path | None:
    if entry.mmproj:
        return Path(entry.mmproj).expanduser()
    if entry.mmproj_asset:
        from mistral_gateway.engines.assets import resolve_asset

        return resolve_asset(entry.mmproj_asset, settings.weights_dir)
    return None
