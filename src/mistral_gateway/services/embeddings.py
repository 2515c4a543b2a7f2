"""Create Embeddings: resolve the model, check the request against it and the limits, embed, render the body.

The body is rendered straight to JSON bytes (orjson, numpy rows): float32 values in their shortest form, which
round-trip exactly, and no per-float Python objects on the event loop. Its shape is ``EmbeddingResponse``.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from anyio.to_thread import run_sync

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import Embeddings, EngineError
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from mistral_gateway.protocol.embeddings import EmbeddingDtype, EmbeddingRequest, EncodingFormat
from mistral_gateway.services.completions import engine_errors
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.models import FineTunedModelRepository

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MAX_INPUTS", "MAX_TOTAL_CHARS", "EmbeddingService", "quantize", "render", "serves_embeddings"]

MAX_INPUTS = 2048  # as OpenAI
MAX_TOTAL_CHARS = 4_000_000  # characters over all inputs of one request (texts are truncated to the model's max)
CAPABILITY = "embeddings"
_EMBEDDING_ENGINES = frozenset({"sentence-transformers", "fake"})
RENDER_INLINE_MAX = 128  # larger results are rendered in a worker thread


def serves_embeddings(entry: ModelEntry) -> bool:
    """Mistral's model capabilities have no embeddings flag: the engine manager's ``kind_of`` decides (an embedding
    engine, or no chat/FIM capability), among the engines that have an embedding loader."""
    return entry.engine in _EMBEDDING_ENGINES and kind_of(entry) == "embedding"


class EmbeddingService:
    def __init__(self, catalog: ModelCatalog, engines: EngineManager,
                 fine_tuned: FineTunedModelRepository | None = None, *, max_inputs: int = MAX_INPUTS,
                 max_total_chars: int = MAX_TOTAL_CHARS) -> None:
        self._catalog = catalog
        self._engines = engines
        self._fine_tuned = fine_tuned
        self.max_inputs = max_inputs
        self.max_total_chars = max_total_chars

    async def create(self, workspace_id: str, request: EmbeddingRequest) -> bytes:
        """The response body (``EmbeddingResponse`` as JSON bytes)."""
        entry = await self._resolve(workspace_id, request.model)
        texts = request.texts
        self._check_size(texts)
        dimension = _requested_dimension(request)
        try:
            engine = await self._engines.embedding(entry)
        except EngineError as exc:  # e.g. weights missing: a 503 with Retry-After, like every engine failure
            raise ServiceUnavailable(f"model {request.model!r} could not be loaded: {exc}", retry_after=30.0,
                                     code="MODEL_LOAD_FAILED") from exc
        if dimension is not None and dimension != engine.dimensions:
            raise BadRequest(f"model {request.model!r} produces {engine.dimensions}-dimensional embeddings and cannot "
                             f"return {dimension} dimensions (output_dimension is not supported by this model); "
                             f"omit it or pass {engine.dimensions}", code="UNSUPPORTED_OUTPUT_DIMENSION",
                             param="output_dimension" if request.output_dimension is not None else "dimensions")
        try:
            result = await engine.embed(texts)
        except EngineError as exc:
            raise engine_errors(exc) from exc
        if len(result.vectors) != len(texts) or len(result.token_counts) != len(texts):
            raise engine_errors(EngineError(f"the engine returned {len(result.vectors)} vectors for {len(texts)} "
                                            "inputs"))
        args = (uuid.uuid4().hex, request.model, result.vectors, sum(result.token_counts), request.dtype,
                request.encoding)
        if len(texts) > RENDER_INLINE_MAX:  # ~10 ms of numpy and orjson per 100k values: not on the event loop
            return await run_sync(render, *args)
        return render(*args)

    async def vectors(self, model: str, texts: list[str]) -> Embeddings:
        """The local embedding model's vectors for ``texts`` (libraries: ingestion and retrieval). Engine
        failures are the same 503/502 errors as a request's."""
        entry = self._catalog.resolve(model)
        if entry is None or not serves_embeddings(entry):
            raise _unsupported(model)
        try:
            engine = await self._engines.embedding(entry)
        except EngineError as exc:
            raise ServiceUnavailable(f"model {model!r} could not be loaded: {exc}", retry_after=30.0,
                                     code="MODEL_LOAD_FAILED") from exc
        try:
            result = await engine.embed(texts)
        except EngineError as exc:
            raise engine_errors(exc) from exc
        if len(result.vectors) != len(texts):
            raise engine_errors(EngineError(f"the engine returned {len(result.vectors)} vectors for {len(texts)} "
                                            "inputs"))
        return result

    async def _resolve(self, workspace_id: str, name: str) -> ModelEntry:
        entry = self._catalog.resolve(name)
        if entry is None:
            if self._fine_tuned is not None and await run_sync(self._fine_tuned.get, workspace_id, name) is not None:
                raise _unsupported(name)  # fine-tuned models are chat or classifier models
            raise NotFound(f"model {name!r} not found; GET /v1/models lists the available ones",
                           code="MODEL_NOT_FOUND", param="model")
        if not serves_embeddings(entry):
            raise _unsupported(name)
        return entry

    def _check_size(self, texts: list[str]) -> None:
        if len(texts) > self.max_inputs:
            raise BadRequest(f"{len(texts)} inputs in one request; the limit is {self.max_inputs}",
                             code="TOO_MANY_INPUTS", param="input")
        total = sum(len(t) for t in texts)
        if total > self.max_total_chars:
            raise PayloadTooLarge(f"the inputs total {total} characters; the limit per request is "
                                  f"{self.max_total_chars}", code="INPUT_TOO_LARGE")


def _unsupported(name: str) -> BadRequest:
    return BadRequest(f"model {name!r} does not support {CAPABILITY!r}; use an embedding model such as "
                      "'mistral-embed'", code="UNSUPPORTED_MODEL_CAPABILITY", param="model")


def _requested_dimension(request: EmbeddingRequest) -> int | None:
    ours, openai = request.output_dimension, request.dimensions
    if ours is not None and openai is not None and ours != openai:
        raise BadRequest(f"output_dimension ({ours}) and dimensions ({openai}) disagree; send one of them",
                         param="output_dimension")
    return ours if ours is not None else openai


def quantize(vectors: Any, dtype: EmbeddingDtype) -> np.ndarray:
    """Unit vectors (rows) as float32, or quantized as documented in ``protocol.embeddings``."""
    import numpy as np

    x = np.asarray(vectors, dtype=np.float32)
    if dtype == "float":
        return np.ascontiguousarray(x)
    if dtype == "int8":
        return np.clip(np.rint(x * 127.0), -127, 127).astype(np.int8)
    if dtype == "uint8":
        return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    bits = np.packbits(x > 0, axis=-1)
    if dtype == "ubinary":
        return bits
    return (bits.astype(np.int16) - 128).astype(np.int8)


def render(response_id: str, model: str, vectors: Any, prompt_tokens: int, dtype: EmbeddingDtype = "float",
           encoding: EncodingFormat = "float") -> bytes:
    """The ``EmbeddingResponse`` body as JSON bytes."""
    rows = quantize(vectors, dtype)
    if encoding == "base64":
        if rows.dtype.itemsize > 1:
            rows = rows.astype(rows.dtype.newbyteorder("<"))  # little-endian float32, whatever the host
        data: list[dict[str, Any]] = [
            {"object": "embedding", "embedding": base64.b64encode(row.tobytes()).decode("ascii"), "index": i}
            for i, row in enumerate(rows)]
    else:
        data = [{"object": "embedding", "embedding": row, "index": i} for i, row in enumerate(rows)]
    body = {"id": response_id, "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
