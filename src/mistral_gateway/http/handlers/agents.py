"""Agents handler whose input the registry row cannot describe: the version switch takes ``?version=N`` (Mistral's
spec and SDK) or a JSON body ``{"version": N}`` (the docs' curl)."""

from __future__ import annotations

from mistral_gateway.app import Result
from mistral_gateway.errors import ValidationFailed
from mistral_gateway.http.bodies import json_object, read_body, validate_body
from mistral_gateway.http.handlers import Call
from mistral_gateway.protocol.agents import AgentVersionBody

__all__ = ["update_agent_version"]

MAX_VERSION_BODY = 4096  # {"version": N}, with room to spare


async def update_agent_version(call: Call) -> Result:
    version = call.query().version
    if version is None:
        raw = await read_body(call.request, MAX_VERSION_BODY)
        if not raw.strip():
            raise ValidationFailed([{"type": "missing", "loc": ["query", "version"],
                                     "msg": 'Field required: the query parameter version, or a JSON body '
                                            '{"version": N}'}])
        version = validate_body(AgentVersionBody, json_object(raw)).version
    return await call.invoke(version)
