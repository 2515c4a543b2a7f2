"""The operations on stored resources (files, models, batch jobs): the service calls, off the event loop where
they block. Path parameters arrive in ``ctx.path``, the parsed query in ``ctx.query``; ``request`` is the body
(or, for an upload, the ``Upload`` the caller received)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anyio.to_thread import run_sync

from mistral_gateway.app.context import Context, Work
from mistral_gateway.app.results import BinaryResult, RawJSON
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.batch import BatchJobIn, BatchJobOut, BatchJobsOut
from mistral_gateway.protocol.files import DeleteFileOut, FileSignedURL, ListFilesOut, RetrieveFileOut, UploadFileOut
from mistral_gateway.protocol.models import BaseModelCard, DeleteModelOut, FTModelCard
from mistral_gateway.services.batch import BatchService
from mistral_gateway.services.files import UploadSink

__all__ = ["RESOURCES", "Upload"]


@dataclass(frozen=True, slots=True)
class Upload:
    """A received upload: its bytes already in ``sink`` (not yet durable), and the form's other fields."""

    sink: UploadSink
    filename: str | None
    purpose: str | None = None
    expiry_hours: int | None = None
    visibility: str | None = None


# -- files ----------------------------------------------------------------------------------------------------
async def upload_file(ctx: Context, upload: Upload) -> UploadFileOut:
    return await run_sync(lambda: ctx.services.files.finish_upload(
        ctx.workspace_id, upload.sink, filename=upload.filename, purpose=upload.purpose,
        expiry_hours=upload.expiry_hours, visibility=upload.visibility))


async def list_files(ctx: Context, _: None) -> ListFilesOut:
    return await run_sync(ctx.services.files.list, ctx.workspace_id, ctx.query)


async def retrieve_file(ctx: Context, _: None) -> RetrieveFileOut:
    return await run_sync(ctx.services.files.retrieve, ctx.workspace_id, ctx.path["file_id"])


async def delete_file(ctx: Context, _: None) -> DeleteFileOut:
    return await run_sync(ctx.services.files.delete, ctx.workspace_id, ctx.path["file_id"])


async def download_file(ctx: Context, _: None) -> BinaryResult:
    download = await run_sync(ctx.services.files.download, ctx.workspace_id, ctx.path["file_id"])
    return BinaryResult(chunks=download.chunks, filename=download.filename, size=download.size)


async def get_signed_url(ctx: Context, _: None) -> FileSignedURL:
    base_url = ctx.base_url or ctx.services.settings.public_base_url
    if not base_url:  # a caller without a request to take it from (a job) needs the setting
        raise BadRequest("signed URLs need the server's address: set public_base_url", code="NO_PUBLIC_BASE_URL")
    return await run_sync(ctx.services.files.signed_url, ctx.workspace_id, ctx.path["file_id"], ctx.query.expiry,
                          base_url)


# -- models ---------------------------------------------------------------------------------------------------
async def list_models(ctx: Context, _: None) -> RawJSON:
    models = ctx.services.models
    body = models.list_json_cached(ctx.workspace_id, ctx.query)  # the hot path: no thread hop when cached
    if body is None:
        body = await run_sync(models.list_json, ctx.workspace_id, ctx.query)
    return RawJSON(body)


async def retrieve_model(ctx: Context, _: None) -> BaseModelCard | FTModelCard:
    model_id = ctx.meter.model = ctx.path["model_id"]
    card = ctx.services.models.catalog.card(model_id)  # base models: no I/O, no thread hop
    if card is not None:
        return card
    return await run_sync(ctx.services.models.retrieve, ctx.workspace_id, model_id)


async def delete_model(ctx: Context, _: None) -> DeleteModelOut:
    model_id = ctx.meter.model = ctx.path["model_id"]
    return await run_sync(ctx.services.models.delete, ctx.workspace_id, model_id)


# -- batch jobs -----------------------------------------------------------------------------------------------
def _batch(ctx: Context) -> BatchService:
    assert ctx.services.batch is not None, "build_services wires the batch service"
    return ctx.services.batch


async def create_batch_job(ctx: Context, request: BatchJobIn) -> BatchJobOut:
    return await _batch(ctx).create(ctx.workspace_id, ctx.principal.token_id, request)


async def get_batch_job(ctx: Context, _: None) -> BatchJobOut:
    return await run_sync(_batch(ctx).get, ctx.workspace_id, ctx.path["job_id"], bool(ctx.query.inline))


async def get_batch_jobs(ctx: Context, metadata: Sequence[tuple[str, str]] | None) -> BatchJobsOut:
    """``metadata``: filters sent one query parameter per key (the SDK's form+explode style), beside ``ctx.query``."""
    return await run_sync(_batch(ctx).list, ctx.workspace_id, ctx.principal.token_id, ctx.query, metadata or ())


async def cancel_batch_job(ctx: Context, _: None) -> BatchJobOut:
    return await run_sync(_batch(ctx).cancel, ctx.workspace_id, ctx.path["job_id"])


RESOURCES: dict[str, Work] = {
    "upload_file": upload_file,
    "list_files": list_files,
    "retrieve_file": retrieve_file,
    "delete_file": delete_file,
    "download_file": download_file,
    "get_signed_url": get_signed_url,
    "list_available_models": list_models,
    "retrieve_model": retrieve_model,
    "delete_model": delete_model,
    "create_batch_job": create_batch_job,
    "get_batch_job": get_batch_job,
    "get_batch_jobs": get_batch_jobs,
    "cancel_batch_job": cancel_batch_job,
}
