"""The agent operations: CRUD and versions on the agents service, off the event loop (database). Agents
completions are a model operation (``app.operations.agent_completion``)."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.app.context import Context, Work
from mistral_gateway.app.results import NoContent
from mistral_gateway.protocol.agents import (
    Agent,
    AgentCreationRequest,
    AgentList,
    AgentUpdateRequest,
)
from mistral_gateway.services.agents import AgentService

__all__ = ["AGENTS", "agents_of"]


def agents_of(ctx: Context) -> AgentService:
    assert ctx.services.agents is not None, "build_services wires the agents service"
    return ctx.services.agents


async def create_agent(ctx: Context, request: AgentCreationRequest) -> Agent:
    return await run_sync(agents_of(ctx).create, ctx.workspace_id, request)


async def list_agents(ctx: Context, _: None) -> AgentList:
    return await run_sync(agents_of(ctx).list, ctx.workspace_id, ctx.query)


async def get_agent(ctx: Context, _: None) -> Agent:
    version = ctx.query.agent_version if ctx.query is not None else None
    return await run_sync(agents_of(ctx).get, ctx.workspace_id, ctx.path["agent_id"], version)


async def update_agent(ctx: Context, request: AgentUpdateRequest) -> Agent:
    return await run_sync(agents_of(ctx).update, ctx.workspace_id, ctx.path["agent_id"], request)


async def update_agent_version(ctx: Context, version: int) -> Agent:
    """``version``: from the query, or the docs' JSON body (the handler chose)."""
    return await run_sync(agents_of(ctx).update_version, ctx.workspace_id, ctx.path["agent_id"], version)


async def delete_agent(ctx: Context, _: None) -> NoContent:
    await run_sync(agents_of(ctx).delete, ctx.workspace_id, ctx.path["agent_id"])
    return NoContent()


AGENTS: dict[str, Work] = {
    "create_agent": create_agent,
    "list_agents": list_agents,
    "get_agent": get_agent,
    "update_agent": update_agent,
    "update_agent_version": update_agent_version,
    "delete_agent": delete_agent,
}
