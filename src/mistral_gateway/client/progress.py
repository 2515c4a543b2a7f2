"""Progress reporting for uploads and downloads: a callback ``(bytes_done, bytes_total_or_None)``, a file wrapper
that calls it as httpx reads, and a small text progress bar (no third-party dependency)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["Progress", "ProgressBar", "ProgressReader"]

Progress = Callable[[int, int | None], None]


class ProgressReader:
    """Wraps a binary file for httpx's multipart encoder. ``fileno``/``seek``/``tell`` are passed through, so httpx
    still knows the size up front (a ``Content-Length``, not chunked) and rewinds the file when a request is
    retried; the count restarts with it."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw = raw
        self._progress = progress
        self._done = 0
        self.name = getattr(raw, "name", "upload")
        try:
            self._total: int | None = os.fstat(raw.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            try:
                here = raw.tell()
                self._total = raw.seek(0, os.SEEK_END)
                raw.seek(here)
            except (AttributeError, OSError, ValueError):
                self._total = None

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        if chunk:
            self._done += len(chunk)
            self._progress(self._done, self._total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._raw.seek(offset, whence)
        self._done = position
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class ProgressBar:
    """``label [#####.....]  42%  1.2/2.9 MiB  3.4 MiB/s`` redrawn in place on a stream (stderr by default), at
    most ten times a second. Use it as the ``progress=`` callback; call ``close()`` at the end."""

    def __init__(self, label: str, stream: IO[str] | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._last = 0.0
        self._done = 0
        self._total: int | None = None
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        self._done, self._total = done, total
        now = time.monotonic()
        if now - self._last >= 0.1 or (total is not None and done >= total):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{_size(self._done / elapsed)}/s"
        if self._total:
            frac = min(1.0, self._done / self._total)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            line = f"{self.label} [{bar}] {frac * 100:3.0f}%  {_size(self._done)}/{_size(self._total)}  {rate}"
        else:
            line = f"{self.label} {_size(self._done)}  {rate}"
        self.stream.write("\r" + line + " " * 4)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn or self._done:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
