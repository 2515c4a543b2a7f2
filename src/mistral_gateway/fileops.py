"""Durable file plumbing for weights: streamed hashing, an inter-process lock, atomic writes, verification markers.

A marker is a small JSON sidecar saying "this path, with this size and mtime, was hashed and matched this sha256".
A file whose marker still matches its ``stat()`` is trusted without hashing it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "CHUNK",
    "atomic_write_text",
    "copy_hashing",
    "exclusive_lock",
    "fsync_dir",
    "marker_matches",
    "sha256_file",
    "write_marker",
]

CHUNK = 8 * 1024 * 1024


def copy_hashing(sources: Iterable[Path], out: BinaryIO) -> tuple[int, str]:
    """Stream ``sources`` in order into ``out``; return (bytes written, sha256 hex of them)."""
    digest = hashlib.sha256()
    total = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    for source in sources:
        with open(source, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                chunk = view[:n]
                digest.update(chunk)
                out.write(chunk)
                total += n
    return total, digest.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` (created if needed). Each call opens its own file description, so the
    lock excludes other threads of this process as well as other processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # what mkstemp gives; said explicitly: data-dir files are owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stat_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_marker(marker: Path, path: Path, sha256: str) -> None:
    """Record that ``path`` (as it is now: size and mtime) was hashed and matched ``sha256``."""
    atomic_write_text(marker, json.dumps({**_stat_key(path), "sha256": sha256}, indent=2) + "\n")


def marker_matches(marker: Path, path: Path, sha256: str, size: int) -> bool:
    """True when ``marker`` vouches for ``path`` as it is now, with the expected ``sha256`` and ``size``."""
    try:
        recorded = json.loads(marker.read_text())
        current = _stat_key(path)
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and current["size"] == size
        and recorded.get("sha256") == sha256
        and all(recorded.get(k) == v for k, v in current.items())
    )
