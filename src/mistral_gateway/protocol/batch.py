"""Batch API models (Mistral spec: BatchJobIn, BatchJobOut, BatchJobsOut, BatchJobStatus, BatchRequest, BatchError)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, StringConstraints

from mistral_gateway.protocol.common import RequestModel, ResponseModel
from mistral_gateway.protocol.files import MAX_PAGE

__all__ = [
    "BATCH_STATUSES",
    "MAX_BATCH_REQUESTS",
    "MAX_INPUT_FILES",
    "MAX_METADATA_KEYS",
    "MAX_TIMEOUT_HOURS",
    "TERMINAL_STATUSES",
    "BatchError",
    "BatchJobIn",
    "BatchJobOut",
    "BatchJobStatus",
    "BatchJobsOut",
    "BatchRequest",
    "GetBatchJobQuery",
    "ListBatchJobsQuery",
]

BatchJobStatus = Literal["QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLATION_REQUESTED",
                         "CANCELLED"]
BATCH_STATUSES: tuple[str, ...] = get_args(BatchJobStatus)
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})

MAX_BATCH_REQUESTS = 10_000  # inline requests (the spec's limit); files hold more, streamed line by line
MAX_INPUT_FILES = 16
MAX_TIMEOUT_HOURS = 7 * 24
MAX_METADATA_KEYS = 32

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=32)]
MetadataValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]
FileId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class BatchRequest(RequestModel):
    custom_id: str | None = Field(None, max_length=512)
    body: dict[str, Any]


class BatchJobIn(RequestModel):
    endpoint: str  # checked against the batchable endpoints (a 400); the spec documents it as an enum
    input_files: list[FileId] | None = Field(None, min_length=1, max_length=MAX_INPUT_FILES)
    requests: list[BatchRequest] | None = Field(None, min_length=1, max_length=MAX_BATCH_REQUESTS)
    model: str | None = Field(None, min_length=1, max_length=255)
    agent_id: str | None = Field(None, max_length=255)
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=MAX_METADATA_KEYS)
    timeout_hours: int = Field(24, ge=1, le=MAX_TIMEOUT_HOURS)


class BatchError(ResponseModel):
    message: str
    count: int = 1


class BatchJobOut(ResponseModel):
    id: str
    object: Literal["batch"] = "batch"
    input_files: list[str]
    metadata: dict[str, Any] | None = None
    endpoint: str
    model: str | None = None
    agent_id: str | None = None
    output_file: str | None = None
    error_file: str | None = None
    errors: list[BatchError]
    outputs: list[dict[str, Any]] | None = None
    status: BatchJobStatus
    created_at: int
    total_requests: int
    completed_requests: int
    succeeded_requests: int
    failed_requests: int
    started_at: int | None = None
    completed_at: int | None = None


class BatchJobsOut(ResponseModel):
    data: list[BatchJobOut] = []
    object: Literal["list"] = "list"
    total: int


class GetBatchJobQuery(RequestModel):
    inline: bool | None = Field(None, description="true: the results are returned in `outputs`.")


class ListBatchJobsQuery(RequestModel):
    page: int = Field(0, ge=0, le=MAX_PAGE)
    page_size: int = Field(100, ge=1, le=1000)
    model: str | None = Field(None, max_length=255)
    agent_id: str | None = Field(None, max_length=255)
    metadata: str | None = Field(None, max_length=4096,
                                 description='A JSON object; jobs whose metadata has every pair, e.g. {"run":"a"}.')
    created_after: datetime | None = None
    created_by_me: bool = False
    status: list[BatchJobStatus] | None = Field(None, max_length=len(BATCH_STATUSES))
    order_by: Literal["created", "-created"] = "-created"
