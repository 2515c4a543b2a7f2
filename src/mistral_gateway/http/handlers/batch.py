"""Batch handler whose input the registry row cannot describe: the list's metadata filters."""

from __future__ import annotations

from mistral_gateway.app import Result
from mistral_gateway.http.handlers import Call
from mistral_gateway.protocol.batch import ListBatchJobsQuery

__all__ = ["get_batch_jobs"]


async def get_batch_jobs(call: Call) -> Result:
    query = call.query()
    # The SDK sends the metadata filter form+explode style: each pair is its own parameter (?run=a)
    known = {*ListBatchJobsQuery.model_fields, "status[]", "api_token", *call.path}
    pairs = [(k, v) for k, v in call.request.query_params.multi_items() if k not in known]
    return await call.invoke(pairs, query=query)
