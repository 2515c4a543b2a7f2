"""Chat and FIM completion models (Mistral spec: ChatCompletionRequest/Response, FIMCompletionRequest,
CompletionChunk). Requests tolerate unknown fields; responses always carry the six keys the SDK requires."""

from __future__ import annotations

from typing import Annotated, Any, Literal

# StrictBool: JSON true/false only
from pydantic import Discriminator, Field, StrictBool, Tag, field_validator, model_validator

from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "AssistantMessage",
    "AudioChunk",
    "ChatCompletionChoice",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "CompletionChunk",
    "ContentChunk",
    "FIMCompletionRequest",
    "FunctionCall",
    "Message",
    "OutputTextChunk",
    "OutputThinkChunk",
    "ResponseFormat",
    "TextChunk",
    "ThinkChunk",
    "Tool",
    "ToolCall",
    "UsageInfo",
]


class TextChunk(RequestModel):
    type: Literal["text"] = "text"
    text: str


class ImageURLChunk(RequestModel):
    type: Literal["image_url"] = "image_url"
    image_url: str | dict[str, Any]


class AudioChunk(RequestModel):
    """Base64 audio (any format the decoder reads; a ``data:`` URL prefix is tolerated), for speech models: the
    chat service transcribes it (``services.chat_audio``); other models refuse it."""

    type: Literal["input_audio"] = "input_audio"
    input_audio: str = Field(min_length=1)


class OtherChunk(RequestModel):
    """document_url, reference, file: accepted, then refused by models lacking them."""

    type: Literal["document_url", "reference", "file"]


class ThinkingReference(RequestModel):
    """The reference and tool_reference parts a thinking chunk may carry: accepted, then dropped."""

    type: Literal["reference", "tool_reference"]


class ThinkChunk(RequestModel):
    """An earlier answer's reasoning, sent back in a multi-turn conversation (assistant messages only)."""

    type: Literal["thinking"] = "thinking"
    thinking: list[Annotated[TextChunk | ThinkingReference, Field(discriminator="type")]] = Field(max_length=4096)
    closed: bool | None = None
    signature: str | None = None


ContentChunk = Annotated[TextChunk | ImageURLChunk | ThinkChunk | AudioChunk | OtherChunk, Field(discriminator="type")]
Content = str | list[ContentChunk] | None


class FunctionCall(RequestModel):
    name: str
    arguments: dict[str, Any] | str


class ToolCall(RequestModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None


class SystemMessage(RequestModel):
    role: Literal["system"]
    content: str | list[ContentChunk]


class UserMessage(RequestModel):
    role: Literal["user"]
    content: Content


class AssistantMessage(RequestModel):
    role: Literal["assistant"] = "assistant"
    content: Content = None
    tool_calls: list[ToolCall] | None = None
    prefix: StrictBool = False


class ToolMessage(RequestModel):
    role: Literal["tool"]
    content: Content
    tool_call_id: str | None = None
    name: str | None = None


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class Function(RequestModel):
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    strict: StrictBool = False
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(RequestModel):
    type: Literal["function"] = "function"
    function: Function


class FunctionName(RequestModel):
    name: str


class ToolChoice(RequestModel):
    type: Literal["function"] = "function"
    function: FunctionName


class JsonSchema(RequestModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: StrictBool = False


class ResponseFormat(RequestModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.json_schema is required when type is 'json_schema'")
        return self


class Prediction(RequestModel):
    type: Literal["content"] = "content"
    content: str = ""


class _Sampling(RequestModel):
    model: str = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float = Field(1.0, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=0, le=1_000_000)  # bounded: no model holds more
    stream: StrictBool = False
    stop: str | list[str] | None = None
    random_seed: int | None = Field(None, ge=0, le=2**32 - 1)  # llama.cpp's seed is a uint32
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="OpenAI's name for random_seed.")
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _openai_seed(self) -> _Sampling:
        if self.random_seed is None and self.seed is not None:
            self.random_seed = self.seed  # OpenAI SDKs (and the openai upstream kind) say seed
        return self

    @property
    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)


class ChatCompletionRequest(_Sampling):
    # 2048: turns of ~60 tokens already fill Mistral's largest context (128k); llama.cpp renders and tokenizes a chat
    # superlinearly in its message count (issue 9: 100k messages took 79 s), so the count needs a cap of its own.
    messages: list[Message] = Field(min_length=1, max_length=2048)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "any", "required"] | ToolChoice = "auto"
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    n: int | None = Field(None, ge=1, le=16)
    prediction: Prediction | None = None
    parallel_tool_calls: StrictBool = True
    safe_prompt: StrictBool = False
    min_tokens: int | None = Field(None, ge=0, le=1_000_000)
    # SDK 3.7.0's ReasoningEffort values (the spec lists only high and none)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = Field(
        None, description="Reasoning models only (ignored by the others): how much of max_tokens the thinking may "
                          "use; 'none' answers without thinking.")
    prompt_mode: Literal["reasoning"] | None = Field(
        None, description="Deprecated by Mistral in favour of reasoning_effort: 'reasoning' turns thinking on for "
                          "reasoning models (at the configured default effort).")

    @field_validator("messages")
    @classmethod
    def _prefix_last(cls, messages: list[Any]) -> list[Any]:
        for i, message in enumerate(messages):
            if isinstance(message, AssistantMessage) and message.prefix and i != len(messages) - 1:
                raise ValueError("only the last message may be an assistant message with prefix=true")
        return messages


class FIMCompletionRequest(_Sampling):
    prompt: str
    suffix: str | None = ""
    min_tokens: int | None = Field(None, ge=0, le=1_000_000)


class UsageInfo(ResponseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseToolCall(ResponseModel):
    id: str
    type: Literal["function"] = "function"
    function: dict[str, Any]
    index: int = 0


class OutputTextChunk(ResponseModel):
    type: Literal["text"] = "text"
    text: str


class OutputOtherChunk(ResponseModel):
    """Any other chunk an upstream may send (references...): kept as it came, so clients still parse it."""

    type: str


def _chunk_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("text", "thinking") else "other"


ThinkingPart = Annotated[
    Annotated[OutputTextChunk, Tag("text")] | Annotated[OutputOtherChunk, Tag("other")],
    Discriminator(lambda v: "text" if _chunk_kind(v) == "text" else "other"),
]


class OutputThinkChunk(ResponseModel):
    """Mistral's ThinkChunk: the reasoning that preceded the answer."""

    type: Literal["thinking"] = "thinking"
    thinking: list[ThinkingPart]


OutputChunk = Annotated[
    Annotated[OutputTextChunk, Tag("text")] | Annotated[OutputThinkChunk, Tag("thinking")]
    | Annotated[OutputOtherChunk, Tag("other")],
    Discriminator(_chunk_kind),
]


class _Content:
    """Readers for content that is a string or (reasoning models) a list of thinking and text chunks."""

    content: str | list[Any] | None

    @property
    def text(self) -> str:
        """The answer: the content string, or its text chunks joined."""
        if isinstance(self.content, str) or self.content is None:
            return self.content or ""
        return "".join(c.text for c in self.content if isinstance(c, OutputTextChunk))

    @property
    def thinking(self) -> str:
        """The reasoning of thinking chunks, joined ("" when there is none)."""
        if not isinstance(self.content, list):
            return ""
        return "".join(t.text for c in self.content if isinstance(c, OutputThinkChunk) for t in c.thinking
                       if isinstance(t, OutputTextChunk))


class ResponseMessage(_Content, ResponseModel):
    role: Literal["assistant"] = "assistant"
    content: str | list[OutputChunk] | None = None
    tool_calls: list[ResponseToolCall] | None = None
    prefix: bool = False


class ChatCompletionChoice(ResponseModel):
    index: int
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "model_length", "error", "tool_calls"]


class ChatCompletionResponse(ResponseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    model: str
    usage: UsageInfo
    created: int
    choices: list[ChatCompletionChoice]


class DeltaMessage(_Content, ResponseModel):
    role: Literal["assistant"] | None = None
    content: str | list[OutputChunk] | None = None
    tool_calls: list[ResponseToolCall] | None = None


class ChunkChoice(ResponseModel):
    index: int
    delta: DeltaMessage
    finish_reason: Literal["stop", "length", "error", "tool_calls"] | None = None


class CompletionChunk(ResponseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    usage: UsageInfo | None = Field(None, exclude_if=lambda v: v is None)  # the spec's usage is not nullable
    choices: list[ChunkChoice]
