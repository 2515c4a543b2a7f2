"""The BlobStore contract, run against LocalBlobStore and S3BlobStore on a real S3 API server (moto, on loopback)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistral_gateway.storage.blob_files import local_file
from mistral_gateway.storage.blobs import BlobNotFound, BlobStore, LocalBlobStore
from mistral_gateway.storage.blobs_s3 import MIN_PART_SIZE, S3BlobStore
from s3_server import S3Server, s3_server

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as srv:
        yield srv


# the local store needs no server, so only the S3 runs are e2e (make test-fast still runs the contract locally)
@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return request.getfixturevalue("server").store()


def stored_keys(store: BlobStore) -> list[str]:
    """Every committed blob key (object), whatever the backend."""
    if isinstance(store, LocalBlobStore):
        return sorted(p.name for p in store.root.rglob("*") if p.is_file() and store.tmp_dir not in p.parents)
    assert isinstance(store, S3BlobStore)
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"].removeprefix(store.prefix) for o in listed.get("Contents", []))


def pending(store: BlobStore) -> int:
    """In-progress writes: ``.part`` files locally, multipart uploads on S3."""
    if isinstance(store, LocalBlobStore):
        return len(list(store.tmp_dir.glob("*.part")))
    assert isinstance(store, S3BlobStore)
    return len(store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


def test_round_trip(store: BlobStore) -> None:
    w = store.writer()
    w.write(b"hello ")
    w.write(b"")
    w.write(b"world")
    assert w.size == 11
    info = w.commit()
    assert info.key == w.key
    assert (info.size, info.sha256) == (11, hashlib.sha256(b"hello world").hexdigest())
    assert b"".join(store.read(info.key)) == b"hello world"
    assert store.exists(info.key)
    assert stored_keys(store) == [info.key]
    assert pending(store) == 0


def test_empty_blob(store: BlobStore) -> None:
    info = store.writer().commit()
    assert (info.size, info.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert b"".join(store.read(info.key)) == b""


def test_multipart_object_streams_both_ways(store: BlobStore) -> None:
    # 20 MiB and a bit, written in odd-sized pieces: several full parts and a short last one on S3
    data = os.urandom(20 * MB + 12345)
    w = store.writer()
    for start in range(0, len(data), 3 * MB + 7):
        w.write(data[start:start + 3 * MB + 7])
    info = w.commit()
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    if isinstance(store, S3BlobStore):
        head = store.client.head_object(Bucket=store.bucket, Key=store.object_key(info.key), PartNumber=1)
        assert head["PartsCount"] == 5  # 4 parts of 5 MiB and the rest
    chunks = store.read(info.key, chunk_size=MB)
    sizes = [len(c) for c in chunks]
    assert max(sizes) <= MB and len(sizes) >= 20  # streamed in chunks, never as the whole object
    assert hashlib.sha256(b"".join(store.read(info.key, chunk_size=MB))).hexdigest() == info.sha256


@pytest.mark.e2e
def test_s3_writer_holds_at_most_one_part(server: S3Server) -> None:
    store = server.store()
    w = store.writer()
    w.write(os.urandom(MB))
    assert pending(store) == 0  # no multipart upload until a part is full (a small blob is one PUT)
    for _ in range(6):
        w.write(os.urandom(MB))
        assert len(w._buffer) < MIN_PART_SIZE  # full parts are sent as soon as they fill
    assert pending(store) == 1
    w.abort()
    assert pending(store) == 0


def test_abort_leaves_nothing(store: BlobStore) -> None:
    w = store.writer()
    w.write(os.urandom(6 * MB))  # past one S3 part: an uploaded part must go too
    w.abort()
    w.abort()  # idempotent
    assert stored_keys(store) == []
    assert pending(store) == 0


def test_delete_and_exists(store: BlobStore) -> None:
    w = store.writer()
    w.write(b"x")
    key = w.commit().key
    assert store.exists(key)
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting a missing blob is not an error
    with pytest.raises(BlobNotFound):
        store.read(key)


@pytest.mark.parametrize("key", ["0" * 32, "../etc/passwd", "a/b"])
def test_missing_or_invalid_keys(store: BlobStore, key: str) -> None:
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.read(key)


@pytest.mark.e2e
def test_s3_rejects_parts_below_the_floor(server: S3Server) -> None:
    with pytest.raises(ValueError, match="part size"):
        server.store(part_size=MB)


def test_local_file(store: BlobStore, tmp_path: Path) -> None:
    w = store.writer()
    w.write(b"line 1\nline 2\n")
    key = w.commit().key
    cache = tmp_path / "cache"
    path = local_file(store, key, cache)
    assert path.read_bytes() == b"line 1\nline 2\n"
    assert local_file(store, key, cache) == path  # reused, not fetched again
    if isinstance(store, LocalBlobStore):
        assert path == store.path_for(key)  # the store's own file, no copy
    else:
        assert sorted(p.name for p in cache.iterdir()) == [key]  # the copy, no leftover .part
    with pytest.raises(BlobNotFound):
        local_file(store, "0" * 32, cache)


_KILLED_WRITER = """
import sys, time
from mistral_gateway.storage.blobs_s3 import S3BlobStore, S3Config
endpoint, bucket, key_id, secret = sys.argv[1:5]
store = S3BlobStore(S3Config(bucket=bucket, prefix="blobs/", endpoint_url=endpoint, region="us-east-1",
                             access_key_id=key_id, secret_access_key=secret, part_size=5 * 1024 * 1024))
w = store.writer()
for _ in range(12):
    w.write(b"x" * 1024 * 1024)
print("parts sent", flush=True)
time.sleep(600)
"""


@pytest.mark.e2e
def test_s3_kill_mid_upload_leaves_no_object_and_the_next_start_reaps_it(server: S3Server) -> None:
    store = server.store()
    config = server.config(store.bucket)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, config.endpoint_url or "", store.bucket,
                             config.access_key_id or "", config.secret_access_key or ""],
                            stdout=subprocess.PIPE, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"parts sent\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert stored_keys(store) == []  # two parts went up, but nothing is visible under a key
    assert pending(store) == 1
    # moto dates every upload 2010, so the start-up sweep (uploads older than a day) takes it
    assert store.sweep_partials() == 1
    assert pending(store) == 0
