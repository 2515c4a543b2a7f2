"""Agents API models (Mistral spec: AgentCreationRequest, AgentUpdateRequest, Agent, AgentsCompletionRequest) and the
query strings of the agent operations.

Limits Mistral does not document are ours: every string, list and map an agent stores goes into each prompt or each
list answer, so each has a bound (``MAX_*`` below, stated in the OpenAPI documents through the models).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, RootModel, StrictBool, field_validator

from mistral_gateway.protocol.agent_common import MAX_HANDOFFS, MAX_TOOLS, AgentTool, CompletionArgs
from mistral_gateway.protocol.chat import Message, Prediction, ResponseFormat, Tool, ToolChoice
from mistral_gateway.protocol.common import RequestModel, ResponseModel
from mistral_gateway.protocol.files import MAX_PAGE

__all__ = [
    "AGENT_SOURCES",
    "MAX_AGENT_ID",
    "MAX_INSTRUCTIONS",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_KEYS",
    "MAX_VERSION",
    "SDK_UNSET_JSON",
    "Agent",
    "AgentCreationRequest",
    "AgentList",
    "AgentUpdateRequest",
    "AgentVersionBody",
    "AgentsCompletionRequest",
    "GetAgentQuery",
    "GuardrailConfig",
    "ListAgentsQuery",
    "UpdateAgentVersionQuery",
]

AGENT_SOURCES = ("api", "playground", "agent_builder_v1")
# What SDK 3.7.0 sends for a JSON-encoded query parameter left unset (?metadata="~?~unset~?~sentinel~?~", JSON
# encoded): the agents and conversations lists must read it as "no filter", or every plain list call fails.
SDK_UNSET_JSON = '"~?~unset~?~sentinel~?~"'
MAX_AGENT_ID = 64  # ag_ + 32 hex is 35
MAX_NAME = 512
MAX_INSTRUCTIONS = 100_000  # characters: instructions lead every prompt the agent runs
MAX_DESCRIPTION = 10_000
MAX_VERSION_MESSAGE = 500  # Mistral's
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY = 64
MAX_METADATA_BYTES = 16 * 1024  # the whole map as JSON
MAX_GUARDRAILS = 8
MAX_VERSION = 2**31 - 1

AgentId = Annotated[str, Field(min_length=1, max_length=MAX_AGENT_ID)]


def _bounded_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata holds at most {MAX_METADATA_KEYS} keys")
    if any(not 0 < len(k) <= MAX_METADATA_KEY for k in value):
        raise ValueError(f"metadata keys are 1..{MAX_METADATA_KEY} characters")
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


Threshold = Annotated[float, Field(ge=0, le=1)]
Category = Annotated[str, Field(max_length=64)]


class ModerationLLMConfig(RequestModel):
    model_name: str | None = Field(None, max_length=128)
    custom_category_thresholds: dict[Category, Threshold] | None = Field(None, max_length=32)
    ignore_other_categories: StrictBool = False
    action: Literal["none", "block"] = "none"


class GuardrailConfig(RequestModel):
    """Stored and echoed; agent completions do not run guardrails yet (chat completions have none here)."""

    block_on_error: StrictBool = False
    moderation_llm_v1: ModerationLLMConfig | None = None
    moderation_llm_v2: ModerationLLMConfig | None = None


class _AgentFields(RequestModel):
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    tools: list[AgentTool] = Field(default_factory=list, max_length=MAX_TOOLS)
    completion_args: CompletionArgs = Field(default_factory=CompletionArgs)
    guardrails: list[GuardrailConfig] | None = Field(None, max_length=MAX_GUARDRAILS)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    handoffs: list[AgentId] | None = Field(None, min_length=1, max_length=MAX_HANDOFFS)
    metadata: dict[str, Any] | None = None
    version_message: str | None = Field(None, max_length=MAX_VERSION_MESSAGE)

    _metadata = field_validator("metadata")(_bounded_metadata)


class AgentCreationRequest(_AgentFields):
    model: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=MAX_NAME)


class AgentUpdateRequest(_AgentFields):
    """Every field optional; the fields sent replace the active version's in a new version."""

    model: str | None = Field(None, min_length=1, max_length=255)
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    deployment_chat: StrictBool | None = None


class Agent(ResponseModel):
    model: str
    name: str
    id: str
    object: Literal["agent"] = "agent"
    version: int
    versions: list[int]
    created_at: str  # RFC 3339
    updated_at: str
    deployment_chat: bool
    source: str
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    completion_args: dict[str, Any] = Field(default_factory=dict)
    guardrails: list[dict[str, Any]] | None = None
    description: str | None = None
    handoffs: list[str] | None = None
    metadata: dict[str, Any] | None = None
    version_message: str | None = None


class AgentList(RootModel[list[Agent]]):
    """The deprecated list's bare array."""


class ListAgentsQuery(RequestModel):
    page: int = Field(0, ge=0, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=1000)
    deployment_chat: bool | None = None
    sources: list[Literal["api", "playground", "agent_builder_v1"]] | None = Field(None, max_length=16)
    name: str | None = Field(None, max_length=MAX_NAME)
    search: str | None = Field(None, max_length=MAX_NAME)
    id: str | None = Field(None, max_length=MAX_AGENT_ID)
    metadata: str | None = Field(None, max_length=MAX_METADATA_BYTES,
                                 description='A JSON object: agents whose metadata has every pair, e.g. {"team":"a"}.')


class GetAgentQuery(RequestModel):
    # A version number; aliases (strings) are not served here, so one is a 404 like an unknown version.
    agent_version: int | str | None = Field(None, description="A version number of the agent.")

    @field_validator("agent_version")
    @classmethod
    def _short(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and len(value) > MAX_AGENT_ID:
            raise ValueError(f"agent_version is at most {MAX_AGENT_ID} characters")
        return value


class UpdateAgentVersionQuery(RequestModel):
    # Required by Mistral's spec; the docs' curl sends {"version": N} as the body instead, which is accepted too.
    version: int | None = Field(None, ge=0, le=MAX_VERSION,
                                description="The version to make active (or a JSON body {\"version\": N}).")


class AgentVersionBody(RequestModel):
    version: int = Field(ge=0, le=MAX_VERSION)


class AgentsCompletionRequest(RequestModel):
    """A chat completion run by an agent: no ``model``, ``temperature`` or ``top_p`` (the agent's apply)."""

    agent_id: AgentId
    messages: list[Message] = Field(min_length=1, max_length=2048)
    max_tokens: int | None = Field(None, ge=0, le=1_000_000)
    stream: StrictBool = False
    stop: str | list[str] | None = None
    random_seed: int | None = Field(None, ge=0, le=2**32 - 1)
    metadata: dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "any", "required"] | ToolChoice = "auto"
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int | None = Field(None, ge=1, le=16)
    prediction: Prediction | None = None
    parallel_tool_calls: StrictBool = True
    prompt_mode: Literal["reasoning"] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    prompt_cache_key: str | None = Field(None, max_length=1024)


def agent_limits() -> dict[tuple[str, str, str], dict[str, Any]]:
    """What the agents service enforces beyond the request models, for the OpenAPI documents."""
    metadata = {"maxProperties": MAX_METADATA_KEYS, "x-description": (
        f"At most {MAX_METADATA_KEYS} keys of 1..{MAX_METADATA_KEY} characters, {MAX_METADATA_BYTES} bytes as JSON "
        "(422 otherwise).")}
    model = {"x-description": (
        "A chat model this server serves (GET /v1/models): unknown, a 400 MODEL_NOT_FOUND; one that cannot chat, a "
        "400 UNSUPPORTED_MODEL_CAPABILITY.")}
    tools = {"x-description": (
        "`function` and `document_library` tools are stored; each library id of a `document_library` tool must be "
        "a library of this workspace (400 LIBRARY_NOT_FOUND naming it). The tool runs in conversations, on the "
        "server. `web_search`, `web_search_premium`, `code_interpreter`, `image_generation` and `connector` are "
        "refused with a 400 TOOL_NOT_AVAILABLE naming the tool (this deployment does not run them).")}
    handoffs = {"x-description": (
        "Ids of agents of this workspace, each once, not the agent itself (400 HANDOFF_AGENT_NOT_FOUND or "
        "INVALID_HANDOFF).")}
    limits: dict[tuple[str, str, str], dict[str, Any]] = {}
    for op in ("agents_api_v1_agents_create", "agents_api_v1_agents_update"):
        limits |= {(op, "body", "metadata"): metadata, (op, "body", "model"): model, (op, "body", "tools"): tools,
                   (op, "body", "handoffs"): handoffs}
    limits |= {
        ("agents_api_v1_agents_create", "body", "name"): {"x-description": (
            "A workspace holds at most `max_agents_per_workspace` agents (configuration, default 10000; deleted "
            "ones do not count): one more is a 400 AGENT_LIMIT_REACHED.")},
        ("agents_api_v1_agents_list", "query", "metadata"): {"maxProperties": MAX_METADATA_KEYS, "x-description": (
            f"A JSON object (at most {MAX_METADATA_BYTES} characters, {MAX_METADATA_KEYS} pairs): agents whose "
            "metadata holds every pair; `null` (and the SDK's unset marker) filter nothing. Anything else that is not "
            "a JSON object: 400 INVALID_METADATA_FILTER.")},
        ("agents_api_v1_agents_get", "query", "agent_version"): {"x-description": (
            "A version number of the agent; an unknown one, or an alias (not served here), is a 404 "
            "AGENT_VERSION_NOT_FOUND.")},
        ("agents_api_v1_agents_update_version", "query", "version"): {"x-description": (
            'May be sent as a JSON body {"version": N} instead (the form in Mistral\'s documentation); neither is '
            "a 422; a version the agent lacks, a 404 AGENT_VERSION_NOT_FOUND.")},
        ("agents_completion_v1_agents_completions_post", "body", "agent_id"): {"x-description": (
            "An agent of this workspace (404 AGENT_NOT_FOUND). Its instructions lead the messages as a system "
            "message, its function tools come before the request's (a request tool of the same name replaces "
            "the agent's), its completion_args apply under the request's non-null fields. An agent with a "
            "document_library tool is a 400 TOOL_NOT_AVAILABLE: the tool runs in conversations (POST "
            "/v1/conversations with the agent_id), whose entries hold its execution and references.")},
    }
    return limits
