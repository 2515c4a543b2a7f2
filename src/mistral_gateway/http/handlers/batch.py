"""Batch job handlers: thin wrappers from HTTP to BatchService."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.http.handlers import Call
from mistral_gateway.protocol.batch import BatchJobOut, BatchJobsOut, ListBatchJobsQuery
from mistral_gateway.services.batch import BatchService

__all__ = ["cancel_batch_job", "create_batch_job", "get_batch_job", "get_batch_jobs"]


def _service(call: Call) -> BatchService:
    assert call.services.batch is not None, "build_services wires the batch service"
    return call.services.batch


async def create_batch_job(call: Call) -> BatchJobOut:
    return await _service(call).create(call.workspace_id, call.principal.token_id, await call.json())


async def get_batch_job(call: Call) -> BatchJobOut:
    query = call.query()
    return await run_sync(_service(call).get, call.workspace_id, call.path["job_id"], bool(query.inline))


async def get_batch_jobs(call: Call) -> BatchJobsOut:
    query = call.query()
    # The SDK sends the metadata filter form+explode style: each pair is its own parameter (?run=a)
    known = {*ListBatchJobsQuery.model_fields, "status[]", "api_token", *call.path}
    pairs = [(k, v) for k, v in call.request.query_params.multi_items() if k not in known]
    return await run_sync(_service(call).list, call.workspace_id, call.principal.token_id, query, pairs)


async def cancel_batch_job(call: Call) -> BatchJobOut:
    return await run_sync(_service(call).cancel, call.workspace_id, call.path["job_id"])
