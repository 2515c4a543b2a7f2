"""Libraries and their documents (Mistral spec: LibraryIn, LibraryInUpdate, LibraryOut, ListLibraryOut, DocumentOut,
ListDocumentOut, PaginationInfo, ProcessStatus, DocumentTextContent, ProcessingStatusOut)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StringConstraints

from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "DocumentListQuery",
    "DocumentOut",
    "DocumentTextContent",
    "DocumentUpdateIn",
    "LibraryIn",
    "LibraryInUpdate",
    "LibraryOut",
    "ListDocumentOut",
    "ListLibraryOut",
    "PaginationInfo",
    "ProcessStatus",
    "ProcessingStatusOut",
]

# A library's chunk size, in characters of extracted text (Mistral does not document the unit). The default fits
# the local embedding model's 256-token window; larger chunks are still indexed whole for keyword search, but the
# embedding model reads only their start.
DEFAULT_CHUNK_SIZE = 1000
MIN_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 8000
MAX_NAME = 255
MAX_DESCRIPTION = 10_000

# Text the server stores: PostgreSQL cannot hold a NUL character in text, so none is accepted (a 4xx, not a 500).
_NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=_NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION, pattern=_NO_NUL)]

ProcessStatus = Literal["self_managed", "missing_content", "noop", "done", "todo", "in_progress", "error",
                        "waiting_for_capacity"]


class LibraryIn(RequestModel):
    name: Name
    description: Description | None = None
    chunk_size: int | None = Field(None, ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)


class LibraryInUpdate(RequestModel):
    """The fields sent replace the stored ones; fields not sent (or null) stay."""

    name: Name | None = None
    description: Description | None = None


class LibraryOut(ResponseModel):
    id: str
    name: str
    created_at: str
    updated_at: str
    owner_id: str | None
    owner_type: str = "Workspace"
    total_size: int
    nb_documents: int
    chunk_size: int | None
    emoji: str | None = None
    description: str | None = None
    generated_description: str | None = None
    explicit_user_members_count: int | None = None
    explicit_workspace_members_count: int | None = None
    org_sharing_role: str | None = None
    generated_name: str | None = None


class ListLibraryOut(ResponseModel):
    data: list[LibraryOut]


class DocumentListQuery(RequestModel):
    search: str | None = Field(None, max_length=MAX_NAME, pattern=_NO_NUL)  # a substring of the document's name
    page_size: int = Field(100, ge=1, le=100)
    page: int = Field(0, ge=0, le=1_000_000)
    filters_attributes: str | None = Field(None, max_length=10_000)  # accepted, not applied yet
    sort_by: Literal["created_at", "name", "size"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"


class DocumentOut(ResponseModel):
    id: str
    library_id: str
    hash: str | None
    mime_type: str | None
    extension: str | None
    size: int | None
    name: str
    summary: str | None = None
    created_at: str
    last_processed_at: str | None = None
    number_of_pages: int | None = None
    process_status: ProcessStatus
    uploaded_by_id: str | None
    uploaded_by_type: str
    tokens_processing_main_content: int | None = None
    tokens_processing_summary: int | None = None
    url: str | None = None
    attributes: dict[str, Any] | None = None
    processing_status: str  # free text: Running, Completed, or "Failed: <the reason>"
    tokens_processing_total: int


class PaginationInfo(ResponseModel):
    total_items: int
    total_pages: int
    current_page: int
    page_size: int
    has_more: bool


class ListDocumentOut(ResponseModel):
    pagination: PaginationInfo
    data: list[DocumentOut]


class DocumentTextContent(ResponseModel):
    text: str


class ProcessingStatusOut(ResponseModel):
    document_id: str
    process_status: ProcessStatus
    processing_status: str


# A document's attributes (set by the document update): bounded so a row stays small. Values take the spec's types:
# a boolean, string (a date-time is a string), integer or number, or a list of one of those.
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_STRING = 1000
MAX_ATTRIBUTE_ITEMS = 50

_AttrKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_KEY, pattern=_NO_NUL)]
_AttrStr = Annotated[str, StringConstraints(max_length=MAX_ATTRIBUTE_STRING, pattern=_NO_NUL)]
_AttrInt = Annotated[StrictInt, Field(ge=-(2**53), le=2**53)]  # what a JSON number holds exactly
AttributeValue = (StrictBool | _AttrInt | StrictFloat | _AttrStr
                  | Annotated[list[_AttrStr], Field(max_length=MAX_ATTRIBUTE_ITEMS)]
                  | Annotated[list[_AttrInt], Field(max_length=MAX_ATTRIBUTE_ITEMS)]
                  | Annotated[list[StrictFloat | _AttrInt], Field(max_length=MAX_ATTRIBUTE_ITEMS)]
                  | Annotated[list[StrictBool], Field(max_length=MAX_ATTRIBUTE_ITEMS)])


class DocumentUpdateIn(RequestModel):
    """The fields sent replace the stored ones (``attributes`` as a whole); fields not sent (or null) stay."""

    name: Name | None = None
    attributes: dict[_AttrKey, AttributeValue] | None = Field(None, max_length=MAX_ATTRIBUTES)
