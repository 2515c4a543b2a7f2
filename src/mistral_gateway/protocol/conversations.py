"""Conversation models (Mistral spec: ConversationRequest / AppendRequest / RestartRequest, the *Entry objects,
ConversationResponse, Model/AgentConversation, ConversationHistory / Messages and the conversation stream events).

Client entries may omit ``id``, ``created_at`` and (where the shape is unambiguous) ``type``; the server gives every
stored entry its own id. Entries are kept as the API shows them (JSON ``body`` columns), so the response models
here describe and check shapes rather than carry logic.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, RootModel, StrictBool, Tag, field_validator

from mistral_gateway.protocol.agent_common import MAX_TOOLS, AgentTool, CompletionArgs
from mistral_gateway.protocol.chat import ContentChunk
from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "MAX_INPUT_ENTRIES",
    "AgentConversation",
    "ConversationAppendRequest",
    "ConversationEvent",
    "ConversationHistory",
    "ConversationListQuery",
    "ConversationMessages",
    "ConversationRequest",
    "ConversationResponse",
    "ConversationRestartRequest",
    "ConversationUsage",
    "ConversationsList",
    "InputEntry",
    "ModelConversation",
]

MAX_INPUT_ENTRIES = 256  # per request; a conversation holds at most services.conversations.MAX_ENTRIES
MAX_TEXT = 1_000_000  # characters of one input string, message content or function result
MAX_CHUNKS = 1024
MAX_METADATA_KEYS = 64
MAX_NAME = 512
MAX_DESCRIPTION = 4096
MAX_INSTRUCTIONS = 100_000

Text = Annotated[str, Field(max_length=MAX_TEXT)]
EntryContent = Text | Annotated[list[ContentChunk], Field(max_length=MAX_CHUNKS)]
Metadata = Annotated[dict[str, Any], Field(max_length=MAX_METADATA_KEYS)]


# -- entries a client sends (inputs) --------------------------------------------------------------------------
class _ClientEntry(RequestModel):
    object: Literal["entry"] = "entry"
    id: str | None = Field(None, max_length=64, description="Ignored: the server names every stored entry.")
    created_at: str | None = Field(None, max_length=64)
    completed_at: str | None = Field(None, max_length=64)


class MessageInputEntry(_ClientEntry):
    type: Literal["message.input"] = "message.input"
    role: Literal["user", "assistant"]
    content: EntryContent
    prefix: StrictBool = False


class MessageOutputInput(_ClientEntry):
    type: Literal["message.output"] = "message.output"
    role: Literal["assistant"] = "assistant"
    content: EntryContent
    agent_id: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=255)


class FunctionCallInput(_ClientEntry):
    type: Literal["function.call"] = "function.call"
    tool_call_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=256)
    arguments: dict[str, Any] | Text
    agent_id: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=255)


class FunctionResultEntry(_ClientEntry):
    type: Literal["function.result"] = "function.result"
    tool_call_id: str = Field(min_length=1, max_length=64)
    result: Text


def _entry_kind(value: Any) -> str | None:
    """The entry's ``type``, or the one its fields imply (the SDK and the docs leave it out at times)."""
    if isinstance(value, dict):
        if "type" in value:
            return value["type"]
        if "result" in value:
            return "function.result"
        if "tool_call_id" in value:
            return "function.call"
        return "message.input" if value.get("role", "user") == "user" or "prefix" in value else "message.output"
    return getattr(value, "type", None)


InputEntry = Annotated[
    Annotated[MessageInputEntry, Tag("message.input")] | Annotated[MessageOutputInput, Tag("message.output")]
    | Annotated[FunctionCallInput, Tag("function.call")] | Annotated[FunctionResultEntry, Tag("function.result")],
    Discriminator(_entry_kind),
]
Inputs = Text | Annotated[list[InputEntry], Field(min_length=1, max_length=MAX_INPUT_ENTRIES)]


class ToolConfirmation(RequestModel):
    tool_call_id: str = Field(min_length=1, max_length=64)
    confirmation: Literal["allow", "deny"]


# -- request bodies -------------------------------------------------------------------------------------------
class _Turn(RequestModel):
    inputs: Inputs
    stream: StrictBool = False
    store: StrictBool | None = Field(None, description="false: nothing is persisted (null: true).")
    handoff_execution: Literal["client", "server"] | None = Field(
        None, description="server (default): a handoff runs the next agent at once; client: the turn ends there.")
    completion_args: CompletionArgs | None = None


class ConversationRequest(_Turn):
    """Start: ``agent_id`` (+ ``agent_version``) or ``model`` (+ instructions, tools, completion_args)."""

    agent_id: str | None = Field(None, min_length=1, max_length=64)
    agent_version: int | Annotated[str, Field(max_length=32)] | None = None
    model: str | None = Field(None, min_length=1, max_length=255)
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    tools: list[AgentTool] | None = Field(None, max_length=MAX_TOOLS)
    guardrails: list[dict[str, Any]] | None = Field(None, max_length=16,
                                                    description="Accepted, not applied (no guardrails here).")
    name: str | None = Field(None, max_length=MAX_NAME)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    metadata: Metadata | None = None


class ConversationAppendRequest(_Turn):
    tool_confirmations: list[ToolConfirmation] | None = Field(
        None, max_length=MAX_TOOLS, description="Accepted; no tool here asks for confirmation.")


class ConversationRestartRequest(_Turn):
    from_entry_id: str = Field(min_length=1, max_length=64)
    guardrails: list[dict[str, Any]] | None = Field(None, max_length=16)
    metadata: Metadata | None = None
    agent_version: int | Annotated[str, Field(max_length=32)] | None = None


class ConversationListQuery(RequestModel):
    page: int = Field(0, ge=0, le=1_000_000)
    page_size: int = Field(100, ge=1, le=1000)
    metadata: str | None = Field(None, max_length=8192,
                                 description="A JSON object: only conversations whose metadata has these pairs.")

    @field_validator("metadata")
    @classmethod
    def _json_object(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parsed = json.loads(value)
            except ValueError:
                raise ValueError("metadata must be a JSON object") from None
            if not isinstance(parsed, dict | str):
                raise ValueError("metadata must be a JSON object")
        return value

    @property
    def metadata_pairs(self) -> dict[str, Any]:
        """The filter; a JSON string is no filter (SDK 3.7.0 sends its "unset" sentinel as one when none is given)."""
        parsed = json.loads(self.metadata) if self.metadata else {}
        return parsed if isinstance(parsed, dict) else {}


# -- responses ------------------------------------------------------------------------------------------------
class _Entry(ResponseModel):
    object: Literal["entry"] = "entry"
    id: str
    created_at: str
    completed_at: str | None = None


class MessageInputOut(_Entry):
    type: Literal["message.input"] = "message.input"
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]
    prefix: bool = False


class MessageOutputEntry(_Entry):
    type: Literal["message.output"] = "message.output"
    role: Literal["assistant"] = "assistant"
    content: str | list[dict[str, Any]]
    agent_id: str | None = None
    model: str | None = None


class FunctionCallEntry(_Entry):
    type: Literal["function.call"] = "function.call"
    tool_call_id: str
    name: str
    arguments: str | dict[str, Any]
    agent_id: str | None = None
    model: str | None = None
    confirmation_status: Literal["pending", "allowed", "denied"] | None = None


class FunctionResultOut(_Entry):
    type: Literal["function.result"] = "function.result"
    tool_call_id: str
    result: str


class ToolExecutionEntry(_Entry):
    type: Literal["tool.execution"] = "tool.execution"
    name: str
    arguments: str
    info: dict[str, Any] | None = None
    agent_id: str | None = None
    model: str | None = None


class AgentHandoffEntry(_Entry):
    type: Literal["agent.handoff"] = "agent.handoff"
    previous_agent_id: str
    previous_agent_name: str
    next_agent_id: str
    next_agent_name: str


OutputEntry = Annotated[MessageOutputEntry | ToolExecutionEntry | FunctionCallEntry | AgentHandoffEntry,
                        Field(discriminator="type")]
Entry = Annotated[MessageInputOut | MessageOutputEntry | FunctionCallEntry | FunctionResultOut | ToolExecutionEntry
                  | AgentHandoffEntry, Field(discriminator="type")]


class ConversationUsage(ResponseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    connector_tokens: int | None = None
    connectors: dict[str, int] | None = None


class ConversationResponse(ResponseModel):
    object: Literal["conversation.response"] = "conversation.response"
    conversation_id: str
    outputs: list[OutputEntry]
    usage: ConversationUsage
    guardrails: list[dict[str, Any]] | None = None


class _Conversation(ResponseModel):
    object: Literal["conversation"] = "conversation"
    id: str
    created_at: str
    updated_at: str
    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None


class ModelConversation(_Conversation):
    model: str
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    completion_args: dict[str, Any] = Field(default_factory=dict)
    guardrails: list[dict[str, Any]] | None = None


class AgentConversation(_Conversation):
    agent_id: str
    agent_version: int | None = None


Conversation = ModelConversation | AgentConversation


class ConversationsList(RootModel[list[Conversation]]):
    """GET /v1/conversations: a bare array, newest first."""


class ConversationHistory(ResponseModel):
    object: Literal["conversation.history"] = "conversation.history"
    conversation_id: str
    entries: list[Entry]


class ConversationMessages(ResponseModel):
    object: Literal["conversation.messages"] = "conversation.messages"
    conversation_id: str
    messages: list[Annotated[MessageInputOut | MessageOutputEntry, Field(discriminator="type")]]


# -- stream events ----------------------------------------------------------------------------------------------
class ConversationEvent(ResponseModel):
    """One stream event, sent as ``event: <type>`` + ``data: <json>`` (no ``[DONE]``)."""

    type: str
    created_at: str | None = None


class ResponseStarted(ConversationEvent):
    type: Literal["conversation.response.started"] = "conversation.response.started"
    conversation_id: str


class MessageOutputDelta(ConversationEvent):
    type: Literal["message.output.delta"] = "message.output.delta"
    output_index: int = 0
    id: str
    content_index: int = 0
    model: str | None = None
    agent_id: str | None = None
    role: Literal["assistant"] = "assistant"
    content: str | dict[str, Any]


class _ToolEvent(ConversationEvent):
    output_index: int = 0
    id: str
    model: str | None = None
    agent_id: str | None = None
    name: str


class FunctionCallDelta(_ToolEvent):
    type: Literal["function.call.delta"] = "function.call.delta"
    tool_call_id: str
    arguments: str
    confirmation_status: Literal["pending", "allowed", "denied"] | None = None


class ToolExecutionStarted(_ToolEvent):
    type: Literal["tool.execution.started"] = "tool.execution.started"
    arguments: str


class ToolExecutionDone(ConversationEvent):
    type: Literal["tool.execution.done"] = "tool.execution.done"
    output_index: int = 0
    id: str
    name: str
    info: dict[str, Any] | None = None


class HandoffStarted(ConversationEvent):
    type: Literal["agent.handoff.started"] = "agent.handoff.started"
    output_index: int = 0
    id: str
    previous_agent_id: str
    previous_agent_name: str


class HandoffDone(ConversationEvent):
    type: Literal["agent.handoff.done"] = "agent.handoff.done"
    output_index: int = 0
    id: str
    next_agent_id: str
    next_agent_name: str


class ResponseDone(ConversationEvent):
    type: Literal["conversation.response.done"] = "conversation.response.done"
    usage: ConversationUsage


class ResponseError(ConversationEvent):
    type: Literal["conversation.response.error"] = "conversation.response.error"
    message: str
    code: int


def conversation_limits() -> dict[tuple[str, str, str], dict[str, Any]]:
    """What the request models enforce on ``inputs`` (a shared spec component, so not tightened from the models),
    and the checks the conversation service makes, for the OpenAPI documents."""
    inputs = {"replace": {"anyOf": [
        {"type": "string", "maxLength": MAX_TEXT},
        {"type": "array", "minItems": 1, "maxItems": MAX_INPUT_ENTRIES,
         "items": {"$ref": "#/components/schemas/InputEntries"}}]},
        "x-description": (f"A string (one user message) or 1 to {MAX_INPUT_ENTRIES} entries: `message.input`, "
                          "`message.output`, `function.call`, `function.result` (`type` may be left out; ids and "
                          "times are the server's). A `function.result` must answer a `function.call` of the "
                          "conversation (400 UNKNOWN_TOOL_CALL); a conversation holds at most 2000 entries (400 "
                          "CONVERSATION_TOO_LONG).")}
    limits: dict[tuple[str, str, str], dict[str, Any]] = {
        (op, "body", "inputs"): inputs for op in ("agents_api_v1_conversations_start",
                                                  "agents_api_v1_conversations_append",
                                                  "agents_api_v1_conversations_restart")}
    stream = {"replace": {"type": "boolean", "default": False}, "x-description": (
        "true: the answer is a stream of server-sent events, each an `event: <type>` line and a `data:` line "
        "holding the event's JSON (the spec's ConversationEvents): conversation.response.started, "
        "tool.execution.started/.done (a document_library search, before the answer's deltas), "
        "message.output.delta (an answer's text, then its tool_reference chunks, each its own content_index), "
        "function.call.delta, agent.handoff.started/.done, then conversation.response.done "
        "with the usage, or conversation.response.error; no [DONE]. A request that fails before the first event "
        "answers its status as JSON, as without stream.")}
    for op in ("agents_api_v1_conversations_start", "agents_api_v1_conversations_append",
               "agents_api_v1_conversations_restart"):
        limits[(op, "body", "stream")] = stream
    limits[("agents_api_v1_conversations_start", "body", "tools")] = {"x-description": (
        "Function and document_library tools: the hosted tools (web_search, code_interpreter, image_generation, "
        "connectors) are refused with 400 TOOL_NOT_AVAILABLE, a library id that is not a library of this "
        "workspace with 400 LIBRARY_NOT_FOUND. A document_library tool runs on the server before each model call "
        "of a turn with user text (not with tool_choice `none`): the turn's outputs start with its "
        "`tool.execution` entry (`info.results`: the chunks retrieved, best first), the passages go to the model "
        "numbered, and the answer's content ends with one `tool_reference` chunk per document drawn on. With "
        "`agent_id`, neither `tools` nor `instructions` may be given (the agent's apply); exactly one of "
        "`agent_id` and `model` is required (400 AGENT_OR_MODEL).")}
    limits[("agents_api_v1_conversations_restart", "body", "from_entry_id")] = {"x-description": (
        "An entry of this conversation (400 ENTRY_NOT_FOUND otherwise).")}
    return limits
