"""A change counter other processes on this node can see: the token cache drops its entries when it moves.

The CLI revoking a token (another process) bumps it; the server checks it with one ``stat`` per request,
which keeps revocation immediate without a database round trip on the hot path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from mistral_gateway.storage.permissions import FILE_MODE, private_dir

__all__ = ["Epoch", "FileEpoch"]


class Epoch(Protocol):
    """A change counter: ``current`` is cheap and local (called per request), ``bump`` says something changed."""

    def current(self) -> int: ...

    def bump(self) -> None: ...


class FileEpoch:
    def __init__(self, path: Path) -> None:
        self._path = path
        private_dir(path.parent)
        if not path.exists():
            self.bump()

    def current(self) -> int:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return 0
        return st.st_mtime_ns ^ (st.st_size << 1) ^ st.st_ino

    def bump(self) -> None:
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{time.time_ns()}\n")
        os.replace(tmp, self._path)  # a new inode each time, so even equal mtimes differ
