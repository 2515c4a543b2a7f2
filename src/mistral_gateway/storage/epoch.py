"""A change counter other processes on this node can see: the token cache drops its entries when it moves.

The CLI revoking a token (another process) bumps it; the server checks it with one ``stat`` per request,
which keeps revocation immediate without a database round trip on the hot path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["FileEpoch"]


class FileEpoch:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
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
        tmp.write_text(f"{time.time_ns()}\n")
        os.replace(tmp, self._path)  # a new inode each time, so even equal mtimes differ
