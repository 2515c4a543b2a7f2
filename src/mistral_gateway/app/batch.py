"""Batch lines through the application layer: each line is billed, routed (local or upstream, with fallback) and
limited exactly like the same request over HTTP, under the principal of the token that created the batch."""

from __future__ import annotations

from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.app.application import Application
from mistral_gateway.app.results import error_body
from mistral_gateway.errors import GatewayError
from mistral_gateway.services.batch_run import Execute
from mistral_gateway.services.tokens import Principal
from mistral_gateway.storage.batch import BatchJobRecord

__all__ = ["route_batches"]


def route_batches(application: Application) -> None:
    """From now on the batch service runs its lines through ``application`` (the HTTP app and `worker` call this)."""
    batch = application.services.batch
    if batch is not None:
        batch.deps.execute_for = lambda job: _executor(application, job)


def _executor(application: Application, job: BatchJobRecord) -> Execute:
    principal: Principal | None = None

    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        nonlocal principal
        if principal is None:
            try:
                principal = await run_sync(application.services.tokens.principal, job.token_id or "")
            except GatewayError as err:  # the creating token is gone: every line says why
                return err.status, error_body(err)
        return await application.execute_for_batch(principal, endpoint, body)

    return execute
