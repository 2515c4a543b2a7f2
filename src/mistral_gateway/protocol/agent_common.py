"""Request models shared by agents and conversations (Mistral spec: CompletionArgs and the agent tools), and the
check that refuses the tools this deployment does not run.

Built-in tools (web_search, code_interpreter, ...) parse, so that a request naming one gets a 400 that says which
tool is missing rather than a 422 about a discriminator.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool

from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.chat import Function, Prediction, ResponseFormat
from mistral_gateway.protocol.common import RequestModel

__all__ = [
    "MAX_HANDOFFS",
    "MAX_TOOLS",
    "AgentTool",
    "BuiltinTool",
    "CompletionArgs",
    "DocumentLibraryTool",
    "FunctionTool",
    "ToolConfiguration",
    "refuse_unavailable_tools",
]

MAX_TOOLS = 128  # Mistral documents no bound; every function's schema goes into each prompt
MAX_HANDOFFS = 32
BUILTIN_TOOLS = ("web_search", "web_search_premium", "code_interpreter", "image_generation", "connector")


class CompletionArgs(RequestModel):
    """The sampling an agent or a conversation applies to each of its model calls (all optional)."""

    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=0, le=1_000_000)
    random_seed: int | None = Field(None, ge=0, le=2**32 - 1)
    prediction: Prediction | None = None
    response_format: ResponseFormat | None = None
    tool_choice: Literal["auto", "none", "any", "required"] = "auto"
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None


class ToolConfiguration(RequestModel):
    exclude: list[str] | None = Field(None, max_length=MAX_TOOLS)
    include: list[str] | None = Field(None, max_length=MAX_TOOLS)
    requires_confirmation: list[str] | None = Field(None, max_length=MAX_TOOLS)


class FunctionTool(RequestModel):
    type: Literal["function"] = "function"
    function: Function


class DocumentLibraryTool(RequestModel):
    type: Literal["document_library"]
    library_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=100)
    tool_configuration: ToolConfiguration | None = None


class BuiltinTool(RequestModel):
    """Mistral's hosted tools: parsed only to be refused by name (``refuse_unavailable_tools``)."""

    type: Literal["web_search", "web_search_premium", "code_interpreter", "image_generation", "connector"]
    connector_id: str | None = None
    tool_configuration: ToolConfiguration | None = None
    authorization: dict[str, Any] | None = None
    open_results: StrictBool | None = None


AgentTool = Annotated[FunctionTool | DocumentLibraryTool | BuiltinTool, Field(discriminator="type")]


def refuse_unavailable_tools(tools: list[Any] | None, *, libraries: bool = False) -> None:
    """A 400 naming the first tool this deployment does not run: the hosted built-ins always (no web access, no
    sandbox here); ``document_library`` unless ``libraries`` (the libraries service, issue 15, is wired)."""
    for tool in tools or ():
        kind = tool.type
        if kind in BUILTIN_TOOLS or (kind == "document_library" and not libraries):
            raise BadRequest(f"the '{kind}' tool is not available in this deployment", code="TOOL_NOT_AVAILABLE",
                             param="tools")
