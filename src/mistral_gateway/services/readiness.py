"""Readiness: named checks of the backing servers (database, blob store, Redis when configured), run together at
``GET /ready``, each bounded by a short timeout. Components add their own (``services.readiness.add("redis",
ping)``); a check is a plain function that raises when its server cannot serve."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from anyio.to_thread import run_sync

__all__ = ["Probe", "Readiness"]

log = logging.getLogger("mistral_gateway.readiness")

Probe = Callable[[float], None]  # called with the timeout (for its client's own timeouts); raises when not ready


class Readiness:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._probes: dict[str, Probe] = {}

    def add(self, name: str, probe: Probe) -> None:
        """Register (or replace) the check ``name``."""
        self._probes[name] = probe

    @property
    def names(self) -> list[str]:
        return list(self._probes)

    async def run(self) -> dict[str, str]:
        """Every check at once: name -> ``ok``, ``timeout`` or the failure's exception type. Only the type: a
        driver's message may carry a URL or host detail that is nobody's business at an unauthenticated route
        (the log has the same, never a secret)."""
        results: dict[str, str] = {}

        async def one(name: str, probe: Probe) -> None:
            results[name] = "timeout"
            with anyio.move_on_after(self.timeout):
                try:
                    # abandoned on timeout: the thread ends with its client's own timeout (probes set one)
                    await run_sync(probe, self.timeout, abandon_on_cancel=True)
                    results[name] = "ok"
                except Exception as exc:
                    results[name] = type(exc).__name__
            if results[name] != "ok":
                log.warning("readiness check %s failed: %s", name, results[name])

        async with anyio.create_task_group() as group:
            for name, probe in self._probes.items():
                group.start_soon(one, name, probe)
        return {name: results[name] for name in self._probes}
