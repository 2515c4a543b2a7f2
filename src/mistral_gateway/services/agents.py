"""Agents: stored, versioned configurations of a chat model (instructions, tools, completion args, handoffs).

Every update writes a new version that becomes the active one; ``update_version`` switches back to any version. A
delete hides the agent from the API but keeps its versions: ``snapshot(..., include_deleted=True)`` still answers,
so conversations that ran it keep working. ``completion_body`` turns an agents completion into the chat completion
it runs. Blocking (database): callers on an event loop run these off it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import TypeAdapter

from mistral_gateway.errors import BadRequest, NotFound
from mistral_gateway.protocol.agent_common import AgentTool, CompletionArgs, refuse_unavailable_tools
from mistral_gateway.protocol.agents import (
    MAX_METADATA_KEYS,
    MAX_VERSION,
    SDK_UNSET_JSON,
    Agent,
    AgentCreationRequest,
    AgentList,
    AgentsCompletionRequest,
    AgentUpdateRequest,
    ListAgentsQuery,
)
from mistral_gateway.services.agent_snapshot import AgentSnapshot, new_id, now_us, rfc3339
from mistral_gateway.services.completions import resolve_text_model
from mistral_gateway.services.fine_tuned import WorkspaceModels
from mistral_gateway.services.library_tool import KnownLibraries, check_library_tools, library_ids
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.agents import AgentFilter, AgentRecord, AgentRepository

__all__ = ["DEFAULT_MAX_AGENTS", "AgentService"]

DEFAULT_MAX_AGENTS = 10_000  # per workspace (setting ``max_agents_per_workspace``)
_TOOLS = TypeAdapter(list[AgentTool])
# The fields each version stores (the agent row holds its identity, source and deployment_chat).
_VERSIONED = ("model", "name", "instructions", "tools", "completion_args", "guardrails", "description", "handoffs",
              "metadata", "version_message")


class AgentService:
    def __init__(self, repo: AgentRepository, catalog: ModelCatalog, *, max_agents: int = DEFAULT_MAX_AGENTS,
                 clock: Callable[[], int] = now_us, models: WorkspaceModels | None = None) -> None:
        self.repo = repo
        self.catalog = catalog
        self.models = models  # an agent's model may be a fine-tuned model of its workspace
        self.max_agents = max_agents
        self.clock = clock
        self.libraries: KnownLibraries | None = None  # set with the libraries: document_library ids are checked

    # -- the API --------------------------------------------------------------------------------------------
    def create(self, workspace_id: str, request: AgentCreationRequest) -> Agent:
        if self.repo.count(workspace_id) >= self.max_agents:
            raise BadRequest(f"this workspace already has {self.max_agents} agents, the most it may hold; delete "
                             "some first", code="AGENT_LIMIT_REACHED")
        body = self._checked(workspace_id, None, _version_body(request, {}), request.model_fields_set)
        now = self.clock()
        record = AgentRecord(id=new_id("ag"), workspace_id=workspace_id, name=body["name"], source="api",
                             deployment_chat=False, metadata=body["metadata"], version=0, latest_version=0,
                             created_at=now, updated_at=now)
        self.repo.add(record, body)
        return _agent(record, body, 0, [0])

    def list(self, workspace_id: str, query: ListAgentsQuery) -> AgentList:
        flt = AgentFilter(deployment_chat=query.deployment_chat, sources=tuple(query.sources or ()), name=query.name,
                          search=query.search, id=query.id, metadata=_metadata_filter(query.metadata))
        records = self.repo.list(workspace_id, flt, offset=query.page * query.page_size, limit=query.page_size)
        ids = [r.id for r in records]
        bodies, versions = self.repo.active_bodies(records), self.repo.versions_of(ids)
        return AgentList([_agent(r, bodies[r.id], r.version, versions[r.id]) for r in records])

    def get(self, workspace_id: str, agent_id: str, version: int | str | None = None) -> Agent:
        record = self._record(workspace_id, agent_id)
        if version is None:
            return self._render(record, record.version)
        number = _version_number(version)
        if number is None or self.repo.body(record.id, number) is None:  # an alias: none are served here
            raise NotFound(f"agent {agent_id!r} has no version {_shown(version)}", code="AGENT_VERSION_NOT_FOUND",
                           param="agent_version")
        return self._render(record, number)

    def update(self, workspace_id: str, agent_id: str, request: AgentUpdateRequest) -> Agent:
        record = self._record(workspace_id, agent_id)
        current = self._body(record, record.version)
        body = self._checked(workspace_id, agent_id, _version_body(request, current), request.model_fields_set)
        deployment_chat = record.deployment_chat if request.deployment_chat is None else request.deployment_chat
        updated = self.repo.add_version(workspace_id, agent_id, body, name=body["name"], metadata=body["metadata"],
                                        deployment_chat=deployment_chat, now=self.clock())
        if updated is None:  # deleted meanwhile
            raise _not_found(agent_id)
        return self._render(updated, updated.version, body)

    def update_version(self, workspace_id: str, agent_id: str, version: int) -> Agent:
        record = self._record(workspace_id, agent_id)
        body = self.repo.body(record.id, version)
        if body is None:
            raise NotFound(f"agent {agent_id!r} has no version {version}", code="AGENT_VERSION_NOT_FOUND",
                           param="version")
        updated = self.repo.set_version(workspace_id, agent_id, version, name=body["name"],
                                        metadata=body.get("metadata"), now=self.clock())
        if updated is None:
            raise _not_found(agent_id)
        return self._render(updated, version, body)

    def delete(self, workspace_id: str, agent_id: str) -> None:
        if not self.repo.delete(workspace_id, agent_id, self.clock()):
            raise _not_found(agent_id)

    # -- for conversations (AgentLookup) and agent completions --------------------------------------------
    def snapshot(self, workspace_id: str, agent_id: str, version: int | str | None = None, *,
                 include_deleted: bool = False) -> AgentSnapshot:
        record = self.repo.get(workspace_id, agent_id, include_deleted=include_deleted)
        if record is None:
            raise _not_found(agent_id)
        number = record.version if version is None else _version_number(version)
        body = None if number is None else self.repo.body(record.id, number)
        if number is None or body is None:
            raise BadRequest(f"agent {agent_id!r} has no version {_shown(version)}", code="AGENT_VERSION_NOT_FOUND",
                             param="agent_version")
        return AgentSnapshot(id=record.id, version=number, name=body["name"], model=body["model"],
                             instructions=body.get("instructions"), description=body.get("description"),
                             tools=list(body.get("tools") or ()),
                             completion_args=dict(body.get("completion_args") or {}),
                             handoffs=list(body.get("handoffs") or ()), deleted=record.deleted_at is not None)

    def completion_body(self, workspace_id: str, request: AgentsCompletionRequest) -> dict[str, Any]:
        """The chat completion request an agents completion runs: the agent's instructions as a leading system
        message, its function tools before the request's (a request tool of the same name replaces the agent's),
        its completion args under the request's explicit, non-null fields, and its model."""
        agent = self.snapshot(workspace_id, request.agent_id)
        if library_ids(agent.tools):  # a chat completion has no place for the tool's execution and references
            raise BadRequest(f"agent {agent.id!r} has a document_library tool, which runs in conversations only: "
                             "start one with POST /v1/conversations and this agent_id", code="TOOL_NOT_AVAILABLE",
                             param="agent_id")
        refuse_unavailable_tools(_TOOLS.validate_python(agent.tools))
        sent = {k: v for k, v in request.model_dump(mode="json", by_alias=True, exclude_unset=True).items()
                if v is not None and k not in ("agent_id", "prompt_cache_key")}
        messages = sent.pop("messages")
        if agent.instructions:
            messages = [{"role": "system", "content": agent.instructions}, *messages]
        own = sent.pop("tools", None) or []
        names = {t["function"]["name"] for t in own}
        tools = [*(t for t in agent.tools if t["type"] == "function" and t["function"]["name"] not in names), *own]
        args = {k: v for k, v in agent.completion_args.items() if v is not None}
        body = {**args, **sent, "model": agent.model, "messages": messages}
        if tools:
            body["tools"] = tools
        return body

    # -- helpers --------------------------------------------------------------------------------------------
    def _record(self, workspace_id: str, agent_id: str) -> AgentRecord:
        record = self.repo.get(workspace_id, agent_id)
        if record is None:
            raise _not_found(agent_id)
        return record

    def _body(self, record: AgentRecord, version: int) -> dict[str, Any]:
        body = self.repo.body(record.id, version)
        assert body is not None, f"agent {record.id} lacks its version {version}"
        return body

    def _render(self, record: AgentRecord, version: int, body: dict[str, Any] | None = None) -> Agent:
        return _agent(record, body or self._body(record, version), version, self.repo.versions(record.id))

    def _checked(self, workspace_id: str, agent_id: str | None, body: dict[str, Any],
                 sent: set[str]) -> dict[str, Any]:
        """400s for a model that cannot chat, a tool nothing here runs, a handoff to an agent not in the
        workspace (or to the agent itself). Only the fields ``sent`` are checked: a version's carried-over
        fields stay as they were accepted (renaming an agent whose handoff target was deleted still works)."""
        if "model" in sent:
            try:
                resolved = self.models(workspace_id, body["model"]) if self.models is not None else None
                resolve_text_model(self.catalog, body["model"], "completion_chat", resolved)
            except NotFound as err:  # a field of the body, not the addressed resource: 400 (chat's message, code)
                raise BadRequest(err.message, code=err.code, param="model") from None
        if "tools" in sent:
            refuse_unavailable_tools(_TOOLS.validate_python(body["tools"]), libraries=True)
            if self.libraries is not None:
                check_library_tools(workspace_id, body["tools"], self.libraries)
        handoffs = body["handoffs"] if "handoffs" in sent and body["handoffs"] else ()
        if len(set(handoffs)) != len(handoffs):
            raise BadRequest("handoffs names an agent twice", code="INVALID_HANDOFF", param="handoffs")
        for target in handoffs:
            if target == agent_id:
                raise BadRequest(f"an agent cannot hand off to itself ({target!r})", code="INVALID_HANDOFF",
                                 param="handoffs")
            if self.repo.get(workspace_id, target) is None:
                raise BadRequest(f"handoff agent {_shown(target)} not found in this workspace",
                                 code="HANDOFF_AGENT_NOT_FOUND", param="handoffs")
        return body


def _version_body(request: AgentCreationRequest | AgentUpdateRequest, current: dict[str, Any]) -> dict[str, Any]:
    """The new version's fields: those sent, else the current version's (a version message is per version)."""
    sent = request.model_fields_set
    dumped = request.model_dump(mode="json", by_alias=True)
    body = {k: current.get(k) for k in _VERSIONED}
    body["version_message"] = None
    for key in _VERSIONED:
        if key in sent and not (key in ("model", "name") and dumped[key] is None):
            body[key] = dumped[key]
    body["tools"] = [_tool_json(t) for t in request.tools] if "tools" in sent else body["tools"] or []
    if "guardrails" in sent and request.guardrails is not None:  # unset options left out (the spec has no nulls)
        body["guardrails"] = [_tool_json(g) for g in request.guardrails]
    if "completion_args" in sent:  # the keys given, so a conversation sees what was set (AgentSnapshot)
        body["completion_args"] = request.completion_args.model_dump(mode="json", by_alias=True, exclude_unset=True)
    body["completion_args"] = body["completion_args"] or {}
    return body


def _tool_json(item: Any) -> dict[str, Any]:
    return item.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


def _agent(record: AgentRecord, body: dict[str, Any], version: int, versions: list[int]) -> Agent:
    return Agent(
        model=body["model"], name=body["name"], id=record.id, version=version, versions=versions,
        created_at=rfc3339(record.created_at), updated_at=rfc3339(record.updated_at),
        deployment_chat=record.deployment_chat, source=record.source, instructions=body.get("instructions"),
        tools=body.get("tools") or [],
        # every key echoed, nulls and the default tool_choice included, as Mistral's documents show
        completion_args=CompletionArgs.model_validate(body.get("completion_args") or {}).model_dump(
            mode="json", by_alias=True),
        guardrails=body.get("guardrails"), description=body.get("description"), handoffs=body.get("handoffs"),
        metadata=body.get("metadata"), version_message=body.get("version_message"))


def _version_number(version: int | str) -> int | None:
    """A version number, or None for anything that cannot be one (an alias, out of the column's range)."""
    if isinstance(version, str):
        text = version.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 10):
            return None
        version = int(text)
    return version if 0 <= version <= MAX_VERSION else None


def _metadata_filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw.strip() in ("", "null", SDK_UNSET_JSON):
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or len(data) > MAX_METADATA_KEYS:
        raise BadRequest(f'metadata must be a JSON object of at most {MAX_METADATA_KEYS} pairs, e.g. {{"team":"a"}}',
                         code="INVALID_METADATA_FILTER", param="metadata")
    return data


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}…"


def _not_found(agent_id: str) -> NotFound:
    return NotFound(f"agent {_shown(agent_id)} not found", code="AGENT_NOT_FOUND", param="agent_id")
