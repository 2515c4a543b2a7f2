"""The agents' OpenAPI documentation: the limits the service enforces, the JSON-encoded list filter, the streamed
agents completions, and the CompletionArgs component's limits (shared by requests and answers)."""

from __future__ import annotations

from typing import Any

import pytest

from mistral_gateway.http.openapi import build_openapi
from mistral_gateway.protocol.agents import MAX_METADATA_KEYS
from mistral_gateway.registry import Registry


@pytest.fixture(scope="module", params=["native", "lowcode"])
def doc(request: pytest.FixtureRequest) -> dict[str, Any]:
    return build_openapi(Registry.load(), request.param)


def operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    prefix = "" if "/mistralai/v1/agents" not in doc["paths"] else "/mistralai"
    return doc["paths"][prefix + path][method]  # type: ignore[no-any-return]


def test_the_metadata_filter_is_one_json_parameter(doc: dict[str, Any]) -> None:
    param = next(p for p in operation(doc, "get", "/v1/agents")["parameters"] if p["name"] == "metadata")
    assert "schema" not in param  # OpenAPI allows schema or content, not both
    schema = param["content"]["application/json"]["schema"]
    assert schema["maxProperties"] == MAX_METADATA_KEYS and "INVALID_METADATA_FILTER" in schema["description"]


def test_service_limits_are_stated(doc: dict[str, Any]) -> None:
    create = doc["components"]["schemas"]["AgentCreationRequest"]["properties"]
    assert "TOOL_NOT_AVAILABLE" in create["tools"]["description"] and create["tools"]["maxItems"] == 128
    assert "HANDOFF_AGENT_NOT_FOUND" in create["handoffs"]["description"]
    assert "max_agents_per_workspace" in create["name"]["description"] and create["name"]["maxLength"] == 512
    version = next(p for p in operation(doc, "patch", "/v1/agents/{agent_id}/version")["parameters"]
                   if p["name"] == "version")
    assert '{"version": N}' in version["schema"]["description"]


def test_agents_completions_document_their_stream(doc: dict[str, Any]) -> None:
    ok = operation(doc, "post", "/v1/agents/completions")["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "text/event-stream"}


def test_completion_args_limits(doc: dict[str, Any]) -> None:
    props = doc["components"]["schemas"]["CompletionArgs"]["properties"]
    assert {"type": "integer", "minimum": 0, "maximum": 1_000_000} in props["max_tokens"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 2**32 - 1} in props["random_seed"]["anyOf"]
