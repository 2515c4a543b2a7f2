"""Files: upload (streamed into the blob store), list, retrieve, delete, download and signed URLs."""

from __future__ import annotations

import json
import mimetypes
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mistral_gateway.echo import shorten
from mistral_gateway.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from mistral_gateway.protocol.files import (
    FILE_PURPOSES,
    MAX_FILE_EXPIRY_HOURS,
    DeleteFileOut,
    FileSignedURL,
    ListFilesOut,
    ListFilesQuery,
    RetrieveFileOut,
    UploadFileOut,
)
from mistral_gateway.security.signing import UrlSigner
from mistral_gateway.storage.blobs import BlobInfo, BlobNotFound, BlobStore, BlobWriter
from mistral_gateway.storage.files import FileFilter, FileRepository
from mistral_gateway.storage.records import FileRecord

__all__ = ["Download", "FileService", "UploadSink"]

_HEAD_BYTES = 64 * 1024


class UploadSink:
    """Receives an upload's bytes as they arrive; enforces the size limit and counts lines on the way."""

    def __init__(self, writer: BlobWriter, max_bytes: int) -> None:
        self._writer = writer
        self._max = max_bytes
        self.lines = 0
        self.head = bytearray()
        self._last = b""

    @property
    def size(self) -> int:
        return self._writer.size

    def write(self, data: bytes) -> None:
        if self._writer.size + len(data) > self._max:
            raise PayloadTooLarge(f"file exceeds the upload limit of {self._max} bytes", code="FILE_TOO_LARGE")
        if data:
            self._writer.write(data)
            self.lines += data.count(b"\n")
            self._last = data[-1:]
            if len(self.head) < _HEAD_BYTES:
                self.head += data[: _HEAD_BYTES - len(self.head)]

    @property
    def line_count(self) -> int:
        # A last line without a trailing newline still counts.
        return self.lines + (1 if self._last and self._last != b"\n" else 0)

    def commit(self) -> BlobInfo:
        return self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()


@dataclass(frozen=True, slots=True)
class Download:
    filename: str
    size: int
    chunks: Iterator[bytes]


class FileService:
    def __init__(
        self,
        repo: FileRepository,
        blobs: BlobStore,
        signer: UrlSigner,
        *,
        max_upload_bytes: int,
        signed_url_max_hours: int = 168,
        clock: Callable[[], float] = time.time,
        presign: Callable[[str, int, str], str] | None = None,
    ) -> None:
        self._repo = repo
        self._blobs = blobs
        self._signer = signer
        self.max_upload_bytes = max_upload_bytes
        self._signed_url_max_hours = signed_url_max_hours
        self._clock = clock
        # (blob key, seconds, Content-Disposition) -> a URL the blob store serves itself: signed downloads redirect
        # there instead of streaming through this server
        self._presign = presign

    # -- upload -----------------------------------------------------------------------------------------------
    def open_upload(self) -> UploadSink:
        return UploadSink(self._blobs.writer(), self.max_upload_bytes)

    def finish_upload(
        self,
        workspace_id: str,
        sink: UploadSink,
        *,
        filename: str | None,
        purpose: str | None,
        expiry_hours: int | None = None,
        visibility: str | None = None,
    ) -> UploadFileOut:
        """Validate what arrived, make the blob durable, then record it. On any error the blob is discarded."""
        try:
            purpose = (purpose or "fine-tune").strip()
            name = _clean_filename(filename)
            if purpose not in FILE_PURPOSES:
                raise BadRequest(f"invalid purpose {shorten(purpose)!r}; expected one of {list(FILE_PURPOSES)}",
                                 param="purpose", code="INVALID_PURPOSE")
            if visibility not in (None, "", "workspace", "user"):
                raise BadRequest("visibility must be 'workspace' or 'user'", param="visibility")
            if expiry_hours is not None and not 0 < expiry_hours <= MAX_FILE_EXPIRY_HOURS:
                raise BadRequest(f"expiry must be between 1 and {MAX_FILE_EXPIRY_HOURS} hours", param="expiry")
            is_jsonl = name.lower().endswith(".jsonl")
            if purpose == "fine-tune" and not is_jsonl:
                raise BadRequest("fine-tuning files must be .jsonl (set purpose to 'batch', 'ocr' or 'audio' "
                                 "for other files)", param="file", code="INVALID_FILE_TYPE")
            if sink.size == 0:
                raise BadRequest("the uploaded file is empty", param="file", code="EMPTY_FILE")
            info = sink.commit()
        except BaseException:
            sink.abort()
            raise
        now = int(self._clock())
        record = FileRecord(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            filename=name,
            bytes=info.size,
            created_at=now,
            purpose=purpose,
            sample_type=_sample_type(purpose, bytes(sink.head)),
            source="upload",
            num_lines=sink.line_count if is_jsonl else None,
            mimetype=_mimetype(name),
            sha256=info.sha256,
            blob_key=info.key,
            expires_at=now + expiry_hours * 3600 if expiry_hours else None,
            visibility=visibility or "workspace",
        )
        try:
            self._repo.add(record)
        except BaseException:
            self._blobs.delete(info.key)
            raise
        return UploadFileOut(**_public(record))

    # -- read ---------------------------------------------------------------------------------------------------
    def list(self, workspace_id: str, query: ListFilesQuery) -> ListFilesOut:
        flt = FileFilter(
            sample_types=tuple(query.sample_type or ()),
            sources=tuple(query.source or ()),
            purpose=query.purpose,
            mimetypes=tuple(query.mimetypes or ()),
            search=query.search or None,
        )
        rows, total = self._repo.list(workspace_id, flt, offset=query.page * query.page_size,
                                      limit=query.page_size, now=int(self._clock()),
                                      with_total=query.include_total)
        return ListFilesOut(data=[UploadFileOut(**_public(r)) for r in rows], total=total)

    def retrieve(self, workspace_id: str, file_id: str) -> RetrieveFileOut:
        return RetrieveFileOut(**_public(self._get(workspace_id, file_id)), deleted=False)

    def delete(self, workspace_id: str, file_id: str) -> DeleteFileOut:
        record = self._repo.delete(workspace_id, _check_id(file_id))
        if record is None:
            raise _not_found(file_id)
        self._blobs.delete(record.blob_key)
        return DeleteFileOut(id=record.id, deleted=True)

    def download(self, workspace_id: str, file_id: str) -> Download:
        record = self._get(workspace_id, file_id)
        try:
            chunks = self._blobs.read(record.blob_key)
        except BlobNotFound as exc:
            raise NotFound(f"content of file {file_id!r} is missing from storage", code="FILE_CONTENT_MISSING") \
                from exc
        return Download(filename=record.filename, size=record.bytes, chunks=chunks)

    # -- signed URLs ----------------------------------------------------------------------------------------
    def signed_url(self, workspace_id: str, file_id: str, expiry_hours: int, base_url: str) -> FileSignedURL:
        record = self._get(workspace_id, file_id)
        if not 1 <= expiry_hours <= self._signed_url_max_hours:
            raise BadRequest(f"expiry must be between 1 and {self._signed_url_max_hours} hours", param="expiry")
        expires = int(self._clock()) + expiry_hours * 3600
        sig = self._signer.sign(record.id, workspace_id, str(expires))
        url = f"{base_url.rstrip('/')}/files/signed/{record.id}?ws={workspace_id}&expires={expires}&signature={sig}"
        return FileSignedURL(url=url)

    def download_signed(self, file_id: str, workspace_id: str, expires: str, signature: str) -> Download:
        self._check_signed(file_id, workspace_id, expires, signature)
        return self.download(workspace_id, file_id)

    @property
    def redirects_signed(self) -> bool:
        return self._presign is not None

    def signed_redirect(self, file_id: str, workspace_id: str, expires: str, signature: str,
                        disposition: Callable[[str], str]) -> str:
        """Where a valid signed URL redirects when the blob store presigns: the same file, expiring no later."""
        assert self._presign is not None, "only called when redirects_signed"
        self._check_signed(file_id, workspace_id, expires, signature)
        record = self._get(workspace_id, file_id)
        seconds = max(1, int(expires) - int(self._clock()))
        return self._presign(record.blob_key, seconds, disposition(record.filename))

    def _check_signed(self, file_id: str, workspace_id: str, expires: str, signature: str) -> None:
        signed = expires.isascii() and expires.isdigit() and self._signer.verify(signature, file_id, workspace_id,
                                                                                  expires)
        if not signed:
            raise Forbidden("invalid signature", code="INVALID_SIGNATURE")
        if int(expires) <= self._clock():
            raise Forbidden("this signed URL has expired", code="SIGNED_URL_EXPIRED")

    def _get(self, workspace_id: str, file_id: str) -> FileRecord:
        record = self._repo.get(workspace_id, _check_id(file_id), int(self._clock()))
        if record is None:
            raise _not_found(file_id)
        return record


def _check_id(file_id: str) -> str:
    try:
        return str(uuid.UUID(file_id))
    except ValueError:
        raise _not_found(file_id) from None


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"file {shorten(file_id)!r} not found", code="FILE_NOT_FOUND", param="file_id")


def _public(record: FileRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "sample_type": record.sample_type,
        "source": record.source,
        "num_lines": record.num_lines,
        "mimetype": record.mimetype,
        "signature": record.sha256[:16],
        "expires_at": record.expires_at,
        "visibility": record.visibility,
    }


def _clean_filename(filename: str | None) -> str:
    name = unicodedata.normalize("NFC", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    name = "".join(ch for ch in name if ch.isprintable())
    if not name or name in (".", ".."):
        raise BadRequest("the file part needs a filename", param="file", code="MISSING_FILENAME")
    if len(name) > 255:  # keep the extension: it decides what the file may be used for
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 254 - len(ext)] + dot + ext) if dot and len(ext) < 16 else name[:255]
    return name


def _mimetype(name: str) -> str:
    if name.lower().endswith(".jsonl"):
        return "application/jsonl"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _sample_type(purpose: str, head: bytes) -> str:
    if purpose == "batch":
        return "batch_request"
    if purpose == "fine-tune":
        first = head.split(b"\n", 1)[0]
        try:
            line = json.loads(first)
        except ValueError:
            return "instruct"
        if isinstance(line, dict) and "text" in line and "messages" not in line:
            return "pretrain"
    return "instruct"
