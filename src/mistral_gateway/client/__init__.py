"""Python client for mistral-gateway's LowCodeAPI dialect (``/mistralai/v1/...``, token as ``?api_token=``).

    from mistral_gateway.client import Client

    with Client("http://127.0.0.1:8080", token) as client:
        reply = client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}])
        for chunk in client.chat.stream(model="mistral-small-latest", messages=[...]):
            print(chunk.choices[0].delta.text, end="")  # .thinking: a reasoning model's thinking
        uploaded = client.files.upload("train.jsonl", purpose="fine-tune", progress=ProgressBar("upload"))
        client.files.download(uploaded.id, to="copy.jsonl")

One method per registry operation (``client.methods()`` lists them), returning the unwrapped ``data`` as the
server's own pydantic models. Path parameters follow the seed's decision flow (new URL format first, then the old
one, the winner remembered per base URL in a cache file); see ``transport`` and ``formats``. Retries: ``retry``.

Only the registry, the protocol models and httpx are imported: no server modules.
"""

from __future__ import annotations

from mistral_gateway.client.async_ import AsyncClient
from mistral_gateway.client.errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    ConflictError,
    NotFoundError,
    NotImplementedOperationError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    StreamError,
    ValidationError,
)
from mistral_gateway.client.formats import Format, FormatMemory, default_cache_path
from mistral_gateway.client.progress import ProgressBar
from mistral_gateway.client.responses import AsyncStream, Stream
from mistral_gateway.client.retry import RetryPolicy
from mistral_gateway.client.sync import Client

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientError",
    "ConflictError",
    "Format",
    "FormatMemory",
    "NotFoundError",
    "NotImplementedOperationError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProgressBar",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "Stream",
    "StreamError",
    "ValidationError",
    "default_cache_path",
]
