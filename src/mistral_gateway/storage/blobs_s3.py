"""Blobs on an S3-compatible object store (AWS S3, MinIO, Ceph, moto), through boto3.

A write is a multipart upload: bytes are buffered up to ``part_size`` and sent as one part, so an upload never
holds more than one part in memory (a blob smaller than one part is a single PUT). The object appears under its
key only when ``commit`` completes the upload; ``abort`` (or, after a crash, ``sweep_partials`` at the next start
or the bucket's lifecycle rule) leaves no object behind.
boto3 rather than obstore: the S3 test server (moto) needs botocore anyway, and boto3 exposes the multipart calls
(abort, listing pending uploads) this store relies on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mistral_gateway.errors import ServiceUnavailable
from mistral_gateway.storage.blobs import CHUNK, BlobInfo, BlobNotFound, CountingWriter

__all__ = ["MIN_PART_SIZE", "S3BlobStore", "S3Config"]

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last
_MISSING = {"404", "NoSuchKey", "NotFound"}
_RETRY_AFTER = 5.0
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None  # never logged: only handed to the boto3 client
    part_size: int = 8 * 1024 * 1024
    # a pending upload older than this is a crashed writer's (a live one on another replica finishes well within it)
    stale_upload_age: timedelta = timedelta(days=1)


def _client(config: S3Config, *, probe_timeout: float | None = None) -> Any:
    """The store's client; with ``probe_timeout``, one for readiness probes: one try, short timeouts."""
    import boto3  # optional dependency (the `s3` extra): imported only when an S3 store is built
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        # a few quick retries, then a 503 to the caller rather than a request hanging on a dead endpoint
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60,
                      s3={"addressing_style": "path"}) if probe_timeout is None else
        Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=probe_timeout,
               read_timeout=probe_timeout, s3={"addressing_style": "path"}),
    )


class _S3Writer(CountingWriter):
    def __init__(self, store: S3BlobStore) -> None:
        super().__init__()
        self._store = store
        self._object = store.object_key(self.key)
        # started with the first full part, so making a writer costs no round trip (the HTTP layer opens one on
        # the event loop) and a blob smaller than a part is a single PUT
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._count(data)
        self._buffer += data
        while len(self._buffer) >= self._store.part_size:
            part = bytes(self._buffer[: self._store.part_size])
            del self._buffer[: self._store.part_size]
            self._send(part)

    def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._store.call("create_multipart_upload", Key=self._object)["UploadId"]
        number = len(self._parts) + 1
        response = self._store.call("upload_part", Key=self._object, UploadId=self._upload_id, PartNumber=number,
                                    Body=part)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def commit(self) -> BlobInfo:
        if self._upload_id is None:  # never filled a part: one PUT
            self._store.call("put_object", Key=self._object, Body=bytes(self._buffer))
        else:
            if self._buffer:  # the last part may be short
                self._send(bytes(self._buffer))
            self._store.call("complete_multipart_upload", Key=self._object, UploadId=self._upload_id,
                             MultipartUpload={"Parts": self._parts})
        self._buffer.clear()
        return self._committed()

    def abort(self) -> None:
        if not self._ending():
            return
        self._buffer.clear()
        if self._upload_id is not None:
            self._store.call("abort_multipart_upload", Key=self._object, UploadId=self._upload_id)


class S3BlobStore:
    """Blobs at ``s3://bucket/<prefix><key>``; keys are the same hex ids the local store uses."""

    def __init__(self, config: S3Config, client: Any = None) -> None:
        if config.part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 part size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.part_size = config.part_size
        self.stale_upload_age = config.stale_upload_age
        self.client = client if client is not None else _client(config)
        self._config = config
        self._probe: Any = None  # built on the first readiness probe

    def probe(self, timeout: float) -> None:
        """Readiness: a HEAD on the bucket, one try with short timeouts (a probe must not hold a thread for the
        main client's retries). Raises on any failure."""
        if self._probe is None:
            self._probe = _client(self._config, probe_timeout=timeout)
        self._probe.head_bucket(Bucket=self.bucket)

    def object_key(self, key: str) -> str:
        if not key.isalnum():  # the same check as the local store: no path tricks through a stored key
            raise BlobNotFound(key)
        return f"{self.prefix}{key}"

    def writer(self) -> _S3Writer:
        return _S3Writer(self)

    def call(self, operation: str, **params: Any) -> Any:
        """One S3 call on the bucket: a missing object is ``BlobNotFound``; any other failure (endpoint down,
        denied, throttled past the retries) a 503, logged here without credentials (botocore never puts them in
        its messages)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFound(params.get("Key", "")) from exc
            failure: Exception = exc
        except BotoCoreError as exc:
            failure = exc
        log.warning("S3 %s on bucket %s failed: %s", operation, self.bucket, failure)
        raise ServiceUnavailable("blob storage is unavailable; try again shortly", code="BLOB_STORE_UNAVAILABLE",
                                 retry_after=_RETRY_AFTER) from failure

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        return _stream(self.call("get_object", Key=self.object_key(key))["Body"], chunk_size)

    def delete(self, key: str) -> None:
        self.call("delete_object", Key=self.object_key(key))

    def exists(self, key: str) -> bool:
        try:
            self.call("head_object", Key=self.object_key(key))
        except BlobNotFound:
            return False
        return True

    def presigned_url(self, key: str, expires_in: int, content_disposition: str) -> str:
        """A GET URL the S3 endpoint serves itself (computed locally, no round trip); at most 7 days (SigV4)."""
        return str(self.client.generate_presigned_url(
            "get_object", ExpiresIn=min(expires_in, MAX_PRESIGN_SECONDS),
            Params={"Bucket": self.bucket, "Key": self.object_key(key),
                    "ResponseContentDisposition": content_disposition}))

    def sweep_partials(self) -> int:
        """At start (as the local store does): abort the multipart uploads crashed writers left behind. Storage
        being down then does not stop the server starting (the next start, or a lifecycle rule, reaps them)."""
        try:
            return self.abort_stale_uploads(self.stale_upload_age)
        except ServiceUnavailable:
            return 0

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        """Abort multipart uploads under the prefix started before ``older_than`` ago (a crashed writer's)."""
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        markers: dict[str, str] = {}
        while True:
            page = self.call("list_multipart_uploads", Prefix=self.prefix, **markers)
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.call("abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _stream(body: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()
