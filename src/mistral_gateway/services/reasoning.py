"""Reasoning on local models: Mistral's thinking chunks from models that were not trained to think.

A reasoning request (``reasoning_effort`` other than ``none``, or ``prompt_mode: "reasoning"``, on a reasoning
family) is answered in two real generation phases: first the model works through the conversation under an
instruction, bounded by the effort's share of ``max_tokens``; then it answers with that thinking in its prompt.
The thinking streams first (as thinking deltas), then the answer. A model that writes ``<think>`` tags itself
(``native_thinking`` in its catalog entry) is parsed instead; under a constraint (tools, JSON) it thinks first
without one, then the constrained answer continues after its closing tag.

Usage: ``prompt_tokens`` is the first phase's prompt; ``completion_tokens`` is thinking plus answer (the thinking
in the second prompt is not billed twice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from mistral_gateway.config import ReasoningSettings
from mistral_gateway.engines.base import ChatMessage, Delta, SamplingParams, TextEngine
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    SystemMessage,
    TextChunk,
    ThinkChunk,
)
from mistral_gateway.services.think_tags import CLOSE, OPEN, ThinkTagParser

__all__ = [
    "ANSWER_INSTRUCTION",
    "THINK_INSTRUCTION",
    "Thinking",
    "effective_effort",
    "fold_thinking",
    "plan_thinking",
    "thinking_budget",
    "with_system",
]

THINK_INSTRUCTION = (
    "Before anyone answers the last message, think it through. Write your private reasoning only: what is asked, "
    "the facts and steps that lead to the answer, and a check of the result. Do not write the final reply.")
ANSWER_INSTRUCTION = (
    "You have already thought about the last message; your reasoning was:\n<reasoning>\n{thinking}\n</reasoning>\n"
    "Use it to write your reply. Do not repeat the reasoning.")
# Mistral's native reasoning families think even when the request does not ask (adjustable ones do not).
_ALWAYS_THINKING = ("magistral-",)

AnswerFn = Callable[[str, SamplingParams], AsyncIterator[Delta]]
PromptFn = Callable[[str], Awaitable[str]]


def effective_effort(request: ChatCompletionRequest, reasoning_model: bool, default: str) -> str | None:
    """The effort the request gets, or None when its content stays a plain string (``none``, or a model outside
    the reasoning families: Mistral ignores the parameter there too)."""
    if not reasoning_model or request.reasoning_effort == "none":
        return None
    if request.reasoning_effort is not None:
        return request.reasoning_effort
    if request.prompt_mode == "reasoning" or request.model.startswith(_ALWAYS_THINKING):
        return default
    return None


def thinking_budget(effort: str, max_tokens: int | None, settings: ReasoningSettings) -> int:
    """The thinking's share of ``max_tokens`` (of ``tokens_without_max`` when the request sets none)."""
    share = settings.budget_share.get(effort, settings.budget_share.get(settings.default_effort, 0.5))
    total = settings.tokens_without_max if max_tokens is None else max_tokens
    return int(total * share)


def with_system(messages: list[ChatMessage], text: str) -> list[ChatMessage]:
    """``text`` at the head of the system prompt (a system message is added when there is none)."""
    if messages and messages[0].role == "system":
        return [replace(messages[0], content=f"{text}\n\n{messages[0].content}"), *messages[1:]]
    return [ChatMessage("system", text), *messages]


def _thinking_text(chunk: ThinkChunk) -> str:
    return "".join(part.text for part in chunk.thinking if isinstance(part, TextChunk))


def fold_thinking(messages: Sequence[Any], *, native: bool) -> list[Any]:
    """Request messages with their thinking chunks resolved. Assistant turns keep their answer; their thinking is
    dropped (two-phase models never see earlier thinking), or given back in ``<think>`` tags to native thinkers,
    whose templates handle them. A system prompt keeps a thinking chunk's text (Magistral's recommended system
    prompt has one). Thinking in user or tool turns is refused."""
    folded = []
    for message in messages:
        if not isinstance(message.content, list) or not any(isinstance(c, ThinkChunk) for c in message.content):
            folded.append(message)
            continue
        if not isinstance(message, AssistantMessage | SystemMessage):
            raise BadRequest(f"content chunks of type 'thinking' are only accepted in assistant and system "
                             f"messages, not in a {message.role} message", code="UNSUPPORTED_CONTENT",
                             param="messages")
        content = []
        for chunk in message.content:
            if not isinstance(chunk, ThinkChunk):
                content.append(chunk)
            elif isinstance(message, SystemMessage):
                content.append(TextChunk(text=_thinking_text(chunk)))
            elif native:
                content.append(TextChunk(text=f"{OPEN}\n{_thinking_text(chunk)}\n{CLOSE}\n\n"))
        folded.append(message.model_copy(update={"content": content}))
    return folded


@dataclass(frozen=True)
class Thinking:
    """How one request thinks. ``think_prompt`` None: a native thinker's single generation, parsed; otherwise a
    first phase from ``think_prompt`` (bounded by ``budget``, ending at ``stop``), then ``answer_prompt(thinking)``
    for the answer. ``show``: whether the thinking goes out (a native thinker's is parsed away otherwise)."""

    engine: TextEngine
    budget: int
    show: bool = True
    think_prompt: str | None = None
    answer_prompt: PromptFn | None = None
    stop: tuple[str, ...] = ()
    opened: bool = False  # native, parsed: the prompt already opened the <think> tag

    def deltas(self, prompt: str, params: SamplingParams, answer: AnswerFn) -> AsyncIterator[Delta]:
        if self.think_prompt is None:
            return self._parsed(answer(prompt, params))
        return self._two_phase(params, answer)

    async def _parsed(self, stream: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        parser = ThinkTagParser(opened=self.opened)
        async with aclosing(stream):
            async for delta in stream:
                pieces = parser.feed(delta.text) + (parser.close() if delta.finish_reason is not None else [])
                for thinking, piece in pieces:
                    if self.show or not thinking:
                        yield Delta(piece, thinking=thinking)
                if delta.finish_reason is not None:
                    yield replace(delta, text="")

    async def _two_phase(self, params: SamplingParams, answer: AnswerFn) -> AsyncIterator[Delta]:
        assert self.think_prompt is not None and self.answer_prompt is not None
        pieces: list[str] = []
        first = Delta("", prompt_tokens=None, completion_tokens=0)
        if self.budget > 0:
            think = replace(params, max_tokens=self.budget, min_tokens=0, stop=self.stop, grammar=None,
                            json_schema=None)
            async with aclosing(self.engine.stream(self.think_prompt, think)) as stream:  # a caller gone: stop
                async for delta in stream:
                    if delta.text:
                        pieces.append(delta.text)
                        if self.show:
                            yield Delta(delta.text, thinking=True)
                    if delta.finish_reason is not None:
                        first = delta
        used = first.completion_tokens or 0
        rest = params.max_tokens if params.max_tokens is None else max(params.max_tokens - used, 0)
        second = replace(params, max_tokens=rest,
                         min_tokens=params.min_tokens if rest is None else min(params.min_tokens, rest))
        async with aclosing(answer(await self.answer_prompt("".join(pieces).strip()), second)) as stream:
            async for delta in stream:
                if delta.finish_reason is None:
                    yield delta
                    continue
                # the answer's prompt repeats the thinking, already billed as completion: bill the first prompt
                yield replace(delta, prompt_tokens=first.prompt_tokens or delta.prompt_tokens,
                              completion_tokens=used + (delta.completion_tokens or 0))


async def plan_thinking(engine: TextEngine, messages: list[ChatMessage], tools: Sequence[dict[str, Any]] | None, *,
                        prompt: str, continue_last: bool, effort: str | None, native: bool, constrained: bool,
                        max_tokens: int | None, settings: ReasoningSettings) -> Thinking | None:
    """The ``Thinking`` of a request, or None when it answers as usual. ``prompt``: the usual rendered prompt
    (native thinkers only; the others render their two phases here)."""
    budget = thinking_budget(effort or settings.default_effort, max_tokens, settings)
    if native and not constrained:  # parsed, and the thinking dropped when not asked for
        return Thinking(engine, budget, show=effort is not None, opened=prompt.rstrip().endswith(OPEN))
    if effort is None:
        return None  # a constraint keeps a native thinker from opening its tag
    if native:
        # `+`, not f-strings: a prompt with images (engines.multimodal.MediaPrompt) keeps them when extended
        head = prompt if prompt.rstrip().endswith(OPEN) else prompt + f"{OPEN}\n"

        async def after_tag(thinking: str) -> str:
            return head + f"{thinking}\n{CLOSE}\n\n"

        return Thinking(engine, budget, think_prompt=head, answer_prompt=after_tag, stop=(CLOSE,))
    # the thinking phase never continues an assistant prefix: that belongs to the answer
    think_messages = messages[:-1] if continue_last else messages
    think_prompt = await engine.render(with_system(list(think_messages), THINK_INSTRUCTION), tools)

    async def answer_prompt(thinking: str) -> str:
        return await engine.render(with_system(messages, ANSWER_INSTRUCTION.format(thinking=thinking)), tools,
                                   continue_last=continue_last)

    return Thinking(engine, budget, think_prompt=think_prompt, answer_prompt=answer_prompt)
