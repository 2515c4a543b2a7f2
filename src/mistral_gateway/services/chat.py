"""Chat completions on local engines: message normalisation, safe prompt, JSON modes, tools, n choices, streaming.

Every request becomes a ``_Plan`` whose ``deltas(i)`` produce choice i: plain text, a forced tool call (generated
under a grammar), or ``auto`` (the model's first tokens decide; a call it starts is regenerated under the grammar).
Non-streamed responses collect the same deltas, so both paths behave identically.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from mistral_gateway.config import ModelEntry, ReasoningSettings, Settings
from mistral_gateway.engines.base import ChatMessage, Delta, EngineError, Generation, SamplingParams, TextEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    OutputTextChunk,
    OutputThinkChunk,
    ResponseMessage,
    ResponseToolCall,
    SystemMessage,
    ToolChoice,
    ToolMessage,
    UserMessage,
)
from mistral_gateway.protocol.safety import SAFE_PROMPT  # re-exported: the text the local path prepends
from mistral_gateway.services.chat_audio import ChatAudio
from mistral_gateway.services.completions import (
    completion_id,
    engine_errors,
    primed,
    resolve_text_model,
    response,
    sampling,
    stream_chunks,
)
from mistral_gateway.services.images import ImageLoader
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.services.reasoning import Thinking, effective_effort, fold_thinking, plan_thinking, with_system
from mistral_gateway.services.tools import call_grammar, looks_like_call, parse_tool_calls

__all__ = ["SAFE_PROMPT", "ChatService"]



@dataclass(frozen=True)
class _Plan:
    engine: TextEngine
    prompt: str
    params: SamplingParams
    tool_mode: str | None = None  # None, "auto" or "forced"
    functions: tuple[dict[str, Any], ...] = ()
    parallel: bool = True
    thinking: Thinking | None = None  # reasoning: a thinking phase (or parsing) around the answer

    @property
    def shows_thinking(self) -> bool:
        return self.thinking is not None and self.thinking.show

    def deltas(self, i: int) -> AsyncIterator[Delta]:
        params = _nth(self.params, i)
        if self.thinking is not None:
            return self.thinking.deltas(self.prompt, params, self.answer)
        return self.answer(self.prompt, params)

    def answer(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        if self.tool_mode == "forced":
            return self._forced(prompt, params)
        if self.tool_mode == "auto":
            return self._auto(prompt, params)
        return self.engine.stream(prompt, params)

    async def _forced(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        grammar = call_grammar(list(self.functions), parallel=self.parallel)
        generation = await self.engine.complete(prompt, replace(params, grammar=grammar, json_schema=None, stop=()))
        calls = parse_tool_calls(generation.text, {f["name"] for f in self.functions})
        if not calls:  # cut off by max_tokens before a call was complete
            yield Delta("", "length", generation.prompt_tokens, generation.completion_tokens)
            return
        yield Delta("", "tool_calls", generation.prompt_tokens, generation.completion_tokens, tuple(calls))

    async def _auto(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        stream = self.engine.stream(prompt, params)
        held: list[Delta] = []
        decided: bool | None = None
        try:
            async for delta in stream:
                if decided is None:
                    held.append(delta)
                    decided = looks_like_call("".join(d.text for d in held))
                    if delta.finish_reason is not None and decided is None:
                        decided = False
                    if decided is None:
                        continue
                    if decided:
                        break
                    for d in held:
                        yield d
                    continue
                yield delta
        finally:
            await stream.aclose()  # stops the free generation as soon as a call is detected
        if decided:
            async for delta in self._forced(prompt, params):
                yield delta


class ChatService:
    def __init__(self, catalog: ModelCatalog, engines: EngineManager,
                 clock: Callable[[], float] = time.time, reasoning: ReasoningSettings | None = None,
                 images: ImageLoader | None = None, audio: ChatAudio | None = None) -> None:
        self._catalog = catalog
        self._engines = engines
        self._clock = clock
        self._reasoning = reasoning or ReasoningSettings()
        self._images = images or ImageLoader.from_settings(Settings())
        self._audio = audio  # None: audio parts are refused like any unsupported content

    async def complete(self, request: ChatCompletionRequest,
                       resolved: ModelEntry | None = None) -> ChatCompletionResponse:
        """``resolved``: the model's entry when the application layer resolved it (a workspace's fine-tuned model)."""
        plan = await self._plan(request, resolved)
        generations, messages = [], []
        try:
            for i in range(request.n or 1):
                generation, message = await _collect(plan.deltas(i), plan.shows_thinking)
                generations.append(generation)
                messages.append(message)
        except EngineError as exc:
            raise engine_errors(exc) from exc
        return response(completion_id(), request.model, int(self._clock()), generations, messages)

    async def stream(self, request: ChatCompletionRequest,
                     resolved: ModelEntry | None = None) -> AsyncIterator[CompletionChunk]:
        """Returns once the first piece is ready (errors before it are raised here, not inside the stream)."""
        plan = await self._plan(request, resolved)
        first = await primed(plan.deltas(0))

        def factory(i: int) -> Callable[[], AsyncIterator[Delta]]:
            return (lambda: first) if i == 0 else (lambda: plan.deltas(i))

        return stream_chunks(completion_id(), request.model, int(self._clock()),
                             [factory(i) for i in range(request.n or 1)])

    async def _plan(self, request: ChatCompletionRequest, resolved: ModelEntry | None) -> _Plan:
        model = request.model  # a speech model's chat is a cascade: transcripts in, a chat model answers
        if self._audio is not None:
            request, model = await self._audio.cascade(request)
        entry = resolve_text_model(self._catalog, model, "completion_chat",
                                   resolved if model == request.model else None)
        _check_last_role(request)
        vision = "vision" in entry.capabilities
        native = entry.native_thinking
        folded = fold_thinking(request.messages, native=native)
        messages = [_normalise(m, vision, request.model) for m in folded]
        if vision:
            messages = await self._images.attach(folded, messages)
        if request.safe_prompt:
            messages = with_system(messages, SAFE_PROMPT)
        tool_mode, functions = _tool_mode(request)
        if tool_mode is not None and "function_calling" not in entry.capabilities:
            raise BadRequest(f"model {request.model!r} does not support tools (capability 'function_calling')",
                             code="UNSUPPORTED_MODEL_CAPABILITY", param="tools")
        params = sampling(entry, temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
                          stop=request.stop_list, seed=request.random_seed, min_tokens=request.min_tokens,
                          presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
                          json_schema=_response_schema(request))
        tools = [t.model_dump() for t in request.tools or ()] if tool_mode else None
        effort = effective_effort(request, self._catalog.is_reasoning(request.model), self._reasoning.default_effort)
        try:
            engine = await self._engines.text(entry)
            continue_last = isinstance(request.messages[-1], AssistantMessage) and request.messages[-1].prefix
            prompt = ""  # a two-phase reasoning request renders its own two prompts
            if effort is None or native:
                prompt = await engine.render(messages, tools, continue_last=continue_last)
            thinking = await plan_thinking(
                engine, messages, tools, prompt=prompt, continue_last=continue_last, effort=effort, native=native,
                constrained=tool_mode is not None or params.json_schema is not None, max_tokens=request.max_tokens,
                settings=self._reasoning)
        except EngineError as exc:
            raise engine_errors(exc) from exc
        return _Plan(engine, prompt, params, tool_mode, functions, request.parallel_tool_calls, thinking)


async def _collect(deltas: AsyncIterator[Delta], thinks: bool) -> tuple[Generation, ResponseMessage]:
    text, thought, last = [], [], Delta("")
    async for delta in deltas:
        (thought if delta.thinking else text).append(delta.text)
        last = delta
    generation = Generation("".join(text), last.finish_reason or "stop", last.prompt_tokens or 0,
                            last.completion_tokens or 0)
    chunks: list[Any] = [OutputThinkChunk(thinking=[OutputTextChunk(text="".join(thought))])] if thinks else []
    if last.tool_calls:
        # Mistral rejects assistant messages carrying both text and tool calls: only the thinking goes with them.
        return generation, ResponseMessage(content=chunks or "",
                                           tool_calls=[ResponseToolCall(**c) for c in last.tool_calls])
    if thinks:
        return generation, ResponseMessage(content=[*chunks, OutputTextChunk(text=generation.text)])
    return generation, ResponseMessage(content=generation.text)


def _check_last_role(request: ChatCompletionRequest) -> None:
    """Mistral's rule: the model answers a user or tool message, or continues an assistant prefix. Anything else
    (e.g. a lone assistant message without content) would render an empty or meaningless prompt."""
    last = request.messages[-1]
    if isinstance(last, UserMessage | ToolMessage) or (isinstance(last, AssistantMessage) and last.prefix):
        return
    raise BadRequest(f"Expected last role user or tool (or assistant with prefix true) but got {last.role}",
                     code="INVALID_MESSAGE_ORDER", param="messages")


def _tool_mode(request: ChatCompletionRequest) -> tuple[str | None, tuple[dict[str, Any], ...]]:
    if not request.tools or request.tool_choice == "none":
        return None, ()
    functions = tuple(t.function.model_dump() for t in request.tools)
    choice = request.tool_choice
    if isinstance(choice, ToolChoice):
        named = [f for f in functions if f["name"] == choice.function.name]
        if not named:
            raise BadRequest(f"tool_choice names {choice.function.name!r}, which is not among the tools",
                             param="tool_choice")
        return "forced", tuple(named)
    return ("forced" if choice in ("any", "required") else "auto"), functions


def _nth(params: SamplingParams, i: int) -> SamplingParams:
    """Choice i of n: a different but reproducible seed, so same request + seed gives the same n choices."""
    if i == 0:
        return params
    return replace(params, seed=None if params.seed is None else params.seed + i)


def _text(content: Any, vision: bool, model: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for chunk in content:
        if chunk.type == "text":
            parts.append(chunk.text)
        elif chunk.type == "image_url" and not vision:
            raise BadRequest(f"model {model!r} does not accept images (capability 'vision')",
                             code="UNSUPPORTED_MODEL_CAPABILITY", param="messages")
        elif chunk.type == "image_url":
            continue  # attached by ImageLoader.attach, at the length of the text before it
        else:
            raise BadRequest(f"content chunks of type {chunk.type!r} are not supported by model {model!r}",
                             code="UNSUPPORTED_CONTENT", param="messages")
    return "".join(parts)


def _arguments(raw: dict[str, Any] | str) -> dict[str, Any] | str:
    """Chat templates serialise arguments themselves: hand them an object, not a JSON string."""
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, dict) else raw
    return raw


def _normalise(message: Any, vision: bool, model: str) -> ChatMessage:
    if isinstance(message, SystemMessage | UserMessage):
        return ChatMessage(message.role, _text(message.content, vision, model))
    if isinstance(message, ToolMessage):
        return ChatMessage("tool", _text(message.content, vision, model), tool_call_id=message.tool_call_id,
                           name=message.name)
    assert isinstance(message, AssistantMessage)
    calls = tuple(
        {"id": c.id or "", "type": "function",
         "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)}}
        for c in message.tool_calls or ()
    )
    return ChatMessage("assistant", _text(message.content, vision, model), tool_calls=calls)


def _response_schema(request: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    assert fmt.json_schema is not None
    return fmt.json_schema.schema_
