"""A blob as a file on this machine, for readers that need a path (fine-tuning reads its data files by path)."""

from __future__ import annotations

import os
from pathlib import Path

from mistral_gateway.fileops import fsync_dir
from mistral_gateway.storage.blobs import BlobNotFound, BlobStore, LocalBlobStore
from mistral_gateway.storage.permissions import FILE_MODE, private_dir

__all__ = ["local_file"]


def local_file(blobs: BlobStore, key: str, cache_dir: Path) -> Path:
    """The local store's own file; for a remote store, a copy under ``cache_dir`` (streamed, then renamed into
    place, so a reader never sees half a copy). Blobs never change under a key, so a present copy is reused."""
    if isinstance(blobs, LocalBlobStore):
        path = blobs.path_for(key)
        if not path.is_file():
            raise BlobNotFound(key)
        return path
    target = private_dir(cache_dir) / key
    if target.is_file():
        return target
    chunks = blobs.read(key)  # raises BlobNotFound before any file is made
    tmp = target.with_name(f"{key}.{os.getpid()}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return target
