"""The fine-tuning job operations: the service's calls, off the event loop (database and file reads; a dry run
reads every line of the job's files)."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.app.context import Context, Work
from mistral_gateway.protocol.fine_tuning import (
    ClassifierDetailedJobOut,
    ClassifierJobOut,
    CompletionDetailedJobOut,
    CompletionJobOut,
    JobIn,
    JobsOut,
    LegacyJobMetadataOut,
)
from mistral_gateway.services.fine_tuning import FineTuningService

__all__ = ["FINE_TUNING", "fine_tuning_of"]

Detailed = CompletionDetailedJobOut | ClassifierDetailedJobOut


def fine_tuning_of(ctx: Context) -> FineTuningService:
    assert ctx.services.fine_tuning is not None, "build_services wires the fine-tuning service"
    return ctx.services.fine_tuning


async def create_job(ctx: Context, request: JobIn) -> CompletionJobOut | ClassifierJobOut | LegacyJobMetadataOut:
    ctx.meter.model = request.model
    dry_run = bool(ctx.query is not None and ctx.query.dry_run)
    return await run_sync(fine_tuning_of(ctx).create, ctx.workspace_id, ctx.principal.token_id, request, dry_run)


async def list_jobs(ctx: Context, _: None) -> JobsOut:
    return await run_sync(fine_tuning_of(ctx).list, ctx.workspace_id, ctx.principal.token_id, ctx.query)


async def get_job(ctx: Context, _: None) -> Detailed:
    return await run_sync(fine_tuning_of(ctx).get, ctx.workspace_id, ctx.path["job_id"])


async def start_job(ctx: Context, _: None) -> Detailed:
    return await run_sync(fine_tuning_of(ctx).start, ctx.workspace_id, ctx.path["job_id"])


async def cancel_job(ctx: Context, _: None) -> Detailed:
    return await run_sync(fine_tuning_of(ctx).cancel, ctx.workspace_id, ctx.path["job_id"])


FINE_TUNING: dict[str, Work] = {
    "create_fine_tuning_job": create_job,
    "list_fine_tuning_jobs": list_jobs,
    "get_fine_tuning_job": get_job,
    "start_fine_tuning_job": start_job,
    "cancel_fine_tuning_job": cancel_job,
}
