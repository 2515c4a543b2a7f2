"""Executing one batch line by calling the services directly (the default until the application layer's
``execute_for_batch`` replaces it): the parsed request model in, (status, native JSON body) out."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from mistral_gateway.errors import GatewayError
from mistral_gateway.protocol.chat import ChatCompletionRequest, FIMCompletionRequest
from mistral_gateway.protocol.embeddings import EmbeddingRequest
from mistral_gateway.services.batch import BatchService
from mistral_gateway.services.batch_run import BatchDeps, Execute
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.embeddings import EmbeddingService
from mistral_gateway.services.fim import FimService
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.batch import BatchJobRecord, BatchRepository
from mistral_gateway.storage.blobs import BlobStore
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.files import FileRepository

__all__ = ["build_batch_service", "direct_executor"]


def direct_executor(chat: ChatService, fim: FimService, embeddings: EmbeddingService, workspace_id: str) -> Execute:
    async def execute(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = {**body, "stream": False} if endpoint != "/v1/embeddings" else body  # a line answers whole
        try:
            if endpoint == "/v1/chat/completions":
                out = await chat.complete(ChatCompletionRequest.model_validate(body))
                return 200, orjson.loads(out.model_dump_json())
            if endpoint == "/v1/fim/completions":
                out = await fim.complete(FIMCompletionRequest.model_validate(body))
                return 200, orjson.loads(out.model_dump_json())
            if endpoint == "/v1/embeddings":
                return 200, orjson.loads(await embeddings.create(workspace_id, EmbeddingRequest.model_validate(body)))
        except ValidationError as exc:
            detail = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
                      for e in exc.errors(include_url=False)[:20]]
            return 422, {"detail": detail}
        except GatewayError as err:
            return err.status, {"object": "error", "message": err.message, "type": err.type, "param": err.param,
                                "code": err.code}
        return 400, {"object": "error", "message": f"endpoint {endpoint} is not batchable",
                     "type": "invalid_request_error", "param": "endpoint", "code": "UNSUPPORTED_ENDPOINT"}

    return execute


def build_batch_service(db: Database, blobs: BlobStore, catalog: ModelCatalog, chat: ChatService, fim: FimService,
                        embeddings: EmbeddingService, max_line_bytes: int) -> BatchService:
    def concurrency(job: BatchJobRecord) -> int:
        entry = catalog.resolve(job.model) if job.model else None
        return min(64, max(1, entry.parallel if entry else 4))  # the engine's slots, so it batches the lines

    deps = BatchDeps(repo=BatchRepository(db), files=FileRepository(db), blobs=blobs,
                     execute_for=lambda job: direct_executor(chat, fim, embeddings, job.workspace_id),
                     concurrency_for=concurrency, max_line_bytes=max_line_bytes)
    return BatchService(deps, catalog)
