"""Batch jobs: create, get, list and cancel; ``handler`` is what the job runner calls for kind ``"batch"``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any

import orjson
from anyio.to_thread import run_sync

from mistral_gateway.echo import shorten
from mistral_gateway.errors import BadRequest, GatewayError, NotFound
from mistral_gateway.protocol.batch import (
    MAX_BATCH_REQUESTS,
    MAX_METADATA_KEYS,
    BatchError,
    BatchJobIn,
    BatchJobOut,
    BatchJobsOut,
    ListBatchJobsQuery,
)
from mistral_gateway.services.agent_snapshot import AgentLookup
from mistral_gateway.services.batch_lines import AGENT_ENDPOINT, split_lines
from mistral_gateway.services.batch_run import BatchDeps, JobContextLike, run_batch
from mistral_gateway.services.completions import resolve_text_model
from mistral_gateway.services.fine_tuned import WorkspaceModels
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.batch import BatchFilter, BatchJobRecord, BatchRepository

__all__ = ["BATCHABLE", "BatchService", "Submit"]

# The batchable endpoints and the capability a model needs for each. The one place to change until the registry
# rows carry a ``batchable`` fact (the application layer's); moderation, classification and OCR join there.
BATCHABLE: dict[str, str | None] = {
    "/v1/chat/completions": "completion_chat",
    "/v1/fim/completions": "completion_fim",
    "/v1/embeddings": None,
    "/v1/moderations": "moderation",
    "/v1/chat/moderations": "moderation",
    "/v1/classifications": "classification",
    "/v1/chat/classifications": "classification",
    "/v1/ocr": "ocr",
    "/v1/audio/transcriptions": "audio_transcription",  # lines give file_url or file_id
}

Submit = Callable[[str, dict[str, Any]], None]  # (workspace_id, payload): enqueue a "batch" job


class BatchService:
    def __init__(self, deps: BatchDeps, catalog: ModelCatalog, *, submit: Submit | None = None,
                 clock: Callable[[], float] = time.time, agents: AgentLookup | None = None,
                 models: WorkspaceModels | None = None) -> None:
        self.deps = deps
        self.models = models  # a job's model may be a fine-tuned model of its workspace
        self.agents = agents  # set where the agents service exists: jobs with an agent_id need it
        self._repo: BatchRepository = deps.repo
        self._catalog = catalog
        self.submit: Submit = submit or (lambda workspace_id, payload: None)  # the job runner's, wired at start
        self._clock = clock

    async def handler(self, ctx: JobContextLike) -> None:
        await run_batch(ctx, self.deps)

    # -- create ---------------------------------------------------------------------------------------------
    async def create(self, workspace_id: str, token_id: str | None, request: BatchJobIn) -> BatchJobOut:
        record = await run_sync(self._create, workspace_id, token_id, request)
        await run_sync(self.submit, workspace_id, {"batch_id": record.id})  # a database write
        return _out(record)

    def _create(self, workspace_id: str, token_id: str | None, request: BatchJobIn) -> BatchJobRecord:
        if request.endpoint not in BATCHABLE:
            raise BadRequest(f"endpoint {shorten(request.endpoint)!r} is not batchable; batchable endpoints: "
                             f"{', '.join(BATCHABLE)}", param="endpoint", code="UNSUPPORTED_ENDPOINT")
        if (request.input_files is None) == (request.requests is None):
            raise BadRequest("give exactly one of input_files and requests", param="input_files",
                             code="INVALID_BATCH_INPUT")
        if request.agent_id is not None:
            self._check_agent(workspace_id, request)
        elif request.model is not None:
            self._check_model(workspace_id, request.endpoint, request.model)
        total, blob = 0, None
        if request.requests is not None:
            total, blob = len(request.requests), self._store_requests(request)
        else:
            total = sum(self._input_file_lines(workspace_id, fid) for fid in request.input_files or ())
        record = BatchJobRecord(
            id=str(uuid.uuid4()), workspace_id=workspace_id, token_id=token_id, endpoint=request.endpoint,
            model=request.model, agent_id=request.agent_id, metadata=request.metadata,
            input_files=list(request.input_files or []),
            requests_blob=blob, status="QUEUED", timeout_hours=request.timeout_hours, created_at=int(self._clock()),
            total_requests=total)
        try:
            self._repo.add(record)
        except BaseException:
            if blob:
                self.deps.blobs.delete(blob)
            raise
        return record

    def _check_model(self, workspace_id: str, endpoint: str, model: str) -> None:
        capability = BATCHABLE[endpoint]
        try:
            if capability is None:  # embeddings: fine-tuned models never embed
                if self._catalog.resolve(model) is None:
                    raise NotFound(f"model {shorten(model)!r} not found", code="MODEL_NOT_FOUND")
            else:
                resolved = self.models(workspace_id, model) if self.models is not None else None
                resolve_text_model(self._catalog, model, capability, resolved)
        except GatewayError as err:  # a job for a model that cannot serve it is a bad request, not a missing route
            raise BadRequest(err.message, param="model", code=err.code) from None

    def _check_agent(self, workspace_id: str, request: BatchJobIn) -> None:
        """An agent job runs its lines as agent completions (the agent's model, instructions, tools and
        completion args); the agent is checked now so that a typo fails the job, not each of its lines."""
        if request.model is not None:
            raise BadRequest("give either model or agent_id, not both: an agent job runs on the agent's model",
                             param="agent_id", code="INVALID_BATCH_INPUT")
        if request.endpoint != AGENT_ENDPOINT:
            raise BadRequest(f"agent_id runs agent completions, so the endpoint must be {AGENT_ENDPOINT!r}",
                             param="endpoint", code="UNSUPPORTED_ENDPOINT")
        if self.agents is None:
            raise BadRequest("batches with agent_id are not supported: the agents API is not available here",
                             param="agent_id", code="UNSUPPORTED_AGENT")
        try:
            self.agents.snapshot(workspace_id, request.agent_id or "")
        except GatewayError as err:
            raise BadRequest(err.message, param="agent_id", code=err.code) from None

    def _store_requests(self, request: BatchJobIn) -> str:
        writer = self.deps.blobs.writer()
        try:
            for item in request.requests or ():
                writer.write(orjson.dumps({"custom_id": item.custom_id, "body": item.body}) + b"\n")
            return writer.commit().key
        except BaseException:
            writer.abort()
            raise

    def _input_file_lines(self, workspace_id: str, file_id: str) -> int:
        try:
            file_id = str(uuid.UUID(file_id))
        except ValueError:
            file_id = ""
        record = self.deps.files.get(workspace_id, file_id, int(self._clock())) if file_id else None
        if record is None:
            raise BadRequest(f"input file {shorten(file_id)!r} not found", param="input_files",
                             code="INPUT_FILE_NOT_FOUND")
        if record.purpose != "batch":
            raise BadRequest(f"input file {file_id} has purpose {record.purpose!r}; upload it with purpose 'batch'",
                             param="input_files", code="INVALID_INPUT_FILE")
        return record.num_lines or 0

    # -- read and cancel --------------------------------------------------------------------------------------
    def get(self, workspace_id: str, job_id: str, inline: bool = False) -> BatchJobOut:
        record = self._get(workspace_id, job_id)
        out = _out(record)
        if inline or record.requests_blob:  # inline jobs always carry their results
            out.outputs = self._outputs(record)
        return out

    def list(self, workspace_id: str, token_id: str | None, query: ListBatchJobsQuery,
             pairs: Sequence[tuple[str, str]] = ()) -> BatchJobsOut:
        """``pairs``: metadata filters sent one parameter per key (the SDK's form+explode style)."""
        flt = BatchFilter(
            model=query.model, agent_id=query.agent_id, metadata=_metadata_filter(query.metadata, pairs),
            created_after=None if query.created_after is None else int(
                (query.created_after if query.created_after.tzinfo else query.created_after.replace(tzinfo=UTC))
                .timestamp()),
            token_id=token_id if query.created_by_me else None, statuses=tuple(query.status or ()),
            newest_first=query.order_by == "-created")
        rows, total = self._repo.list(workspace_id, flt, offset=query.page * query.page_size, limit=query.page_size)
        return BatchJobsOut(data=[_out(r) for r in rows], total=total)

    def cancel(self, workspace_id: str, job_id: str) -> BatchJobOut:
        record = self._get(workspace_id, job_id)
        # Not started: nothing runs, so it is cancelled at once; running: the runner stops it within seconds.
        if not self._repo.update(record.id, only_if=("QUEUED",), status="CANCELLED",
                                 completed_at=int(self._clock())):
            self._repo.update(record.id, only_if=("RUNNING",), status="CANCELLATION_REQUESTED")
        return _out(self._get(workspace_id, job_id))

    def _get(self, workspace_id: str, job_id: str) -> BatchJobRecord:
        record = self._repo.get(job_id, workspace_id) if len(job_id) <= 64 else None
        if record is None:
            raise NotFound(f"batch job {shorten(job_id)!r} not found", param="job_id", code="BATCH_JOB_NOT_FOUND")
        return record

    def _outputs(self, record: BatchJobRecord) -> list[dict[str, Any]] | None:
        if record.output_file is None and record.error_file is None:
            return None
        outputs: list[dict[str, Any]] = []
        for file_id in (record.output_file, record.error_file):
            file = self.deps.files.get(record.workspace_id, file_id, int(self._clock())) if file_id else None
            if file is None:
                continue
            for line in split_lines(self.deps.blobs.read(file.blob_key), self.deps.max_line_bytes * 4):
                if len(outputs) >= MAX_BATCH_REQUESTS:  # the rest stays in the files
                    return outputs
                if line:
                    outputs.append(orjson.loads(line))
        return outputs


def _metadata_filter(raw: str | None, pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    data: Any = {}
    if raw:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
    if not (isinstance(data, dict) and all(isinstance(v, str) for v in data.values())):
        raise BadRequest('metadata must be a JSON object of strings, e.g. {"run":"a"}', param="metadata")
    data.update(pairs)
    if len(data) > MAX_METADATA_KEYS or not all(0 < len(k) <= 32 and 0 < len(v) <= 512 for k, v in data.items()):
        raise BadRequest(f"metadata filters: at most {MAX_METADATA_KEYS} pairs, keys of 1..32 characters, values of "
                         "1..512 (unknown query parameters are metadata filters)", param="metadata")
    return data


def _out(record: BatchJobRecord) -> BatchJobOut:
    return BatchJobOut(
        id=record.id, input_files=record.input_files, metadata=record.metadata, endpoint=record.endpoint,
        model=record.model, agent_id=record.agent_id, output_file=record.output_file, error_file=record.error_file,
        errors=[BatchError(**e) for e in record.errors], status=record.status,  # type: ignore[arg-type]
        created_at=record.created_at, total_requests=record.total_requests,
        completed_requests=record.completed_requests, succeeded_requests=record.succeeded_requests,
        failed_requests=record.failed_requests, started_at=record.started_at, completed_at=record.completed_at)
