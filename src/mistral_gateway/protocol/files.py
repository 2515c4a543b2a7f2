"""Files API models (Mistral spec: UploadFileOut, RetrieveFileOut, ListFilesOut, DeleteFileOut, FileSignedURL)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "FILE_PURPOSES",
    "MAX_FILE_EXPIRY_HOURS",
    "MAX_PAGE",
    "DeleteFileOut",
    "FileSignedURL",
    "ListFilesOut",
    "ListFilesQuery",
    "RetrieveFileOut",
    "SignedUrlQuery",
    "UploadFileOut",
]

# The spec's enum is fine-tune|batch|ocr; its own descriptions and the SDK also use audio and agentic_safety.
FilePurpose = Literal["fine-tune", "batch", "ocr", "audio", "agentic_safety"]
FILE_PURPOSES: tuple[str, ...] = get_args(FilePurpose)
SampleType = Literal["pretrain", "instruct", "batch_request", "batch_result", "batch_error"]
Source = Literal["upload", "repository", "mistral"]
MAX_FILE_EXPIRY_HOURS = 10 * 365 * 24  # an upload's expiry: ten years; larger values overflowed SQLite (a 500)
MAX_PAGE = 10**6  # x page_size <= 1000: an OFFSET SQLite holds


class UploadFileOut(ResponseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    sample_type: SampleType
    source: Source
    num_lines: int | None = None
    mimetype: str | None = None
    signature: str | None = None
    expires_at: int | None = None
    visibility: Literal["workspace", "user"] | None = "workspace"


class RetrieveFileOut(UploadFileOut):
    deleted: bool = False


class ListFilesOut(ResponseModel):
    data: list[UploadFileOut]
    object: Literal["list"] = "list"
    total: int | None = None


class DeleteFileOut(ResponseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileSignedURL(ResponseModel):
    url: str


class ListFilesQuery(RequestModel):
    page: int = Field(0, ge=0, le=MAX_PAGE)
    page_size: int = Field(100, ge=1, le=1000)
    include_total: bool = True
    sample_type: list[SampleType] | None = None
    source: list[Source] | None = None
    search: str | None = None
    purpose: FilePurpose | None = None  # an unknown purpose is a 422, not an empty list
    mimetypes: list[str] | None = None


class SignedUrlQuery(RequestModel):
    expiry: int = Field(24, ge=1, description="Hours before the URL becomes invalid.")
