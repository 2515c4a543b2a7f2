"""Upstreams: other servers the gateway forwards to (Mistral's API, another instance, OpenAI-compatible servers)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from mistral_gateway.config import Settings
from mistral_gateway.upstreams.client import FailureHook, UpstreamClient
from mistral_gateway.upstreams.router import Relayed, RelayedStream, Router

__all__ = ["Relayed", "RelayedStream", "Router", "UpstreamClient", "build_upstreams", "passthrough_map"]


def build_upstreams(settings: Settings, *, keys: Mapping[str, str] | None = None,
                    environ: Mapping[str, str] = os.environ,
                    on_failure: FailureHook | None = None) -> dict[str, UpstreamClient]:
    """One client per configured upstream, after checking every name the models and workspaces refer to.
    ``keys`` are secrets from the encrypted store, by upstream name (an env var named in the config wins);
    ``on_failure`` hears of every failed exchange (the metrics)."""
    names = [u.name for u in settings.upstreams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"upstream name(s) declared twice: {dupes}")
    if "local" in names:
        raise ValueError("'local' is reserved for this server's own engines; name the upstream differently")
    known = set(names)
    local_names = {name for entry in settings.models for name in (entry.id, *entry.aliases)}
    for entry in settings.models:
        for route in entry.routes:
            if route.upstream == "local" and route.model and route.model not in local_names:
                raise ValueError(f"model {entry.id!r} falls back to local model {route.model!r}, which is not in "
                                 "the catalog")
            if route.upstream != "local" and route.upstream not in known:
                raise ValueError(f"model {entry.id!r} routes to unknown upstream {route.upstream!r}; "
                                 f"declared upstreams: {sorted(known)}")
    clients: dict[str, UpstreamClient] = {}
    for upstream in settings.upstreams:
        key = environ.get(upstream.api_key_env) if upstream.api_key_env else None
        clients[upstream.name] = UpstreamClient(upstream, api_key=key or (keys or {}).get(upstream.name),
                                                on_failure=on_failure)
    passthrough_map(settings, clients)  # validates
    return clients


def passthrough_map(settings: Settings, clients: Mapping[str, UpstreamClient]) -> dict[str, UpstreamClient]:
    """Workspace name → the upstream every one of its requests goes to."""
    out: dict[str, UpstreamClient] = {}
    for ws in settings.workspaces:
        if ws.passthrough is None:
            continue
        client = clients.get(ws.passthrough)
        if client is None:
            raise ValueError(f"workspace {ws.name!r} passes through to unknown upstream {ws.passthrough!r}")
        if client.kind == "openai":
            raise ValueError(f"workspace {ws.name!r}: passthrough needs a 'mistral' or 'mistral-gateway' upstream "
                             f"(every operation is forwarded unchanged); {ws.passthrough!r} is 'openai'")
        out[ws.name] = client
    return out
