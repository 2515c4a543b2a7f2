"""What a conversation needs of an agent, and the ids and times agents and conversations share.

The agents service (``services/agents.py``) implements ``AgentLookup``; the conversations service only sees this
interface, so either side can be tested with a fake of the other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["AgentLookup", "AgentSnapshot", "new_id", "now_us", "rfc3339"]


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """One version of an agent, as a conversation runs it."""

    id: str
    version: int
    name: str
    model: str
    instructions: str | None = None
    description: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)  # the API's tool objects (function, document_library)
    completion_args: dict[str, Any] = field(default_factory=dict)  # CompletionArgs, unset keys left out
    handoffs: list[str] = field(default_factory=list)  # agent ids this agent may hand the conversation to
    deleted: bool = False


class AgentLookup(Protocol):
    def snapshot(self, workspace_id: str, agent_id: str, version: int | str | None = None, *,
                 include_deleted: bool = False) -> AgentSnapshot:
        """That version of the agent (``None``: the active one; a string: a version number in decimal).
        Raises ``NotFound`` for an agent not in the workspace (or deleted, unless ``include_deleted``: a
        conversation keeps running the version it started with) and ``BadRequest`` for a version it lacks."""
        ...


def new_id(prefix: str) -> str:
    """Mistral's agent, conversation and entry ids: a prefix (``ag``, ``conv``, ``msg``, ``fc``, ``tool_exec``,
    ``handoff``), an underscore and 32 lowercase hex digits."""
    return f"{prefix}_{secrets.token_hex(16)}"


def now_us() -> int:
    return time.time_ns() // 1000


def rfc3339(us: int) -> str:
    """``2025-06-16T09:16:16.726715Z``: the form Mistral's documents show."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
