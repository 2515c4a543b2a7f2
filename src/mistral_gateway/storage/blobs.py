"""Blob storage behind a small interface; the local implementation writes atomically.

A blob becomes visible only after its bytes are fsynced and renamed into place, so a crash mid-upload never leaves
a partial file under a real key: the leftover ``.part`` file is removed by the next ``sweep_partials``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mistral_gateway.fileops import fsync_dir
from mistral_gateway.storage.permissions import DIR_MODE, FILE_MODE, private_dir

__all__ = ["BlobInfo", "BlobNotFound", "BlobStore", "BlobWriter", "CountingWriter", "LocalBlobStore",
           "ServerBlobStore"]

CHUNK = 1024 * 1024


class BlobNotFound(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    sha256: str


class BlobWriter(Protocol):
    size: int

    def write(self, data: bytes) -> None: ...
    def commit(self) -> BlobInfo: ...
    def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...
    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...


class ServerBlobStore(BlobStore, Protocol):
    """The store the server holds: any blob store, plus the clean-up of a crashed writer's leftovers run at start."""

    def sweep_partials(self) -> int: ...

    def probe(self, timeout: float) -> None:
        """Readiness (``GET /ready``): raises if the store cannot take writes right now."""


class CountingWriter:
    """What every store's writer keeps the same way: a fresh key, the size and sha256 of what was written, and
    whether it already ended (committed or aborted: a second ``abort`` does nothing)."""

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    def _count(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def _committed(self) -> BlobInfo:
        self._done = True
        return BlobInfo(key=self.key, size=self.size, sha256=self._hash.hexdigest())

    def _ending(self) -> bool:
        """True the first time an abort asks: it then does its clean-up; False once the writer has ended."""
        if self._done:
            return False
        self._done = True
        return True


class _LocalWriter(CountingWriter):
    def __init__(self, store: LocalBlobStore) -> None:
        super().__init__()
        self._store = store
        self._tmp = store.tmp_dir / f"{os.getpid()}-{self.key}.part"
        self._fh = os.fdopen(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._count(data)

    def commit(self) -> BlobInfo:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        final = self._store.path_for(self.key)
        final.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        fsync_dir(final.parent)
        return self._committed()

    def abort(self) -> None:
        if not self._ending():
            return
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs under ``root/ab/<key>``; in-progress writes under ``root/.tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(Path(root))
        self.tmp_dir = private_dir(self.root / ".tmp")

    def path_for(self, key: str) -> Path:
        if not key.isalnum():
            raise BlobNotFound(key)
        return self.root / key[:2] / key

    def writer(self) -> _LocalWriter:
        return _LocalWriter(self)

    def probe(self, timeout: float) -> None:
        """Readiness: a small file written and removed where uploads are written (``timeout``: local I/O has none)."""
        path = self.tmp_dir / f"ready-{os.getpid()}-{uuid.uuid4().hex}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        try:
            fh = open(self.path_for(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        return _chunks(fh, chunk_size)

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            return self.path_for(key).is_file()
        except BlobNotFound:
            return False

    def sweep_partials(self) -> int:
        """Remove ``.part`` files left by processes that no longer run (a crash mid-write)."""
        removed = 0
        for part in self.tmp_dir.glob("*.part"):
            pid = part.name.split("-", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            part.unlink(missing_ok=True)
            removed += 1
        return removed


def _chunks(fh: object, chunk_size: int) -> Iterator[bytes]:
    with fh:  # type: ignore[attr-defined]
        while chunk := fh.read(chunk_size):  # type: ignore[attr-defined]
            yield chunk


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


