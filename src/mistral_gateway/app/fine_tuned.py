"""The fine-tuned model operations (update, archive, unarchive) on the model service, off the event loop
(database, files). Deleting one is ``delete_model`` (``app.resources``); serving one is ``app.operations.routed``."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.app.context import Context, Work
from mistral_gateway.protocol.fine_tuned_models import (
    ArchiveFTModelOut,
    ClassifierFTModelOut,
    CompletionFTModelOut,
    UnarchiveFTModelOut,
    UpdateFTModelIn,
)

__all__ = ["FINE_TUNED_MODELS"]


async def update_fine_tuned_model(ctx: Context,
                                  request: UpdateFTModelIn) -> CompletionFTModelOut | ClassifierFTModelOut:
    model_id = ctx.meter.model = ctx.path["model_id"]
    return await run_sync(ctx.services.models.fine_tuned.update, ctx.workspace_id, model_id, request)


async def archive_fine_tuned_model(ctx: Context, _: None) -> ArchiveFTModelOut:
    model_id = ctx.meter.model = ctx.path["model_id"]
    return await run_sync(ctx.services.models.fine_tuned.archive, ctx.workspace_id, model_id)


async def unarchive_fine_tuned_model(ctx: Context, _: None) -> UnarchiveFTModelOut:
    model_id = ctx.meter.model = ctx.path["model_id"]
    return await run_sync(ctx.services.models.fine_tuned.unarchive, ctx.workspace_id, model_id)


FINE_TUNED_MODELS: dict[str, Work] = {
    "update_fine_tuned_model": update_fine_tuned_model,
    "archive_fine_tuned_model": archive_fine_tuned_model,
    "unarchive_fine_tuned_model": unarchive_fine_tuned_model,
}
