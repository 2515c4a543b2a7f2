"""Owner-only modes for the data dir: directories 0700, files 0600 (tokens' hashes, uploads and keys live there).

New files and directories are created with these modes; ``secure_data_dir`` also repairs a data dir left by a
version that created them 0755/0644.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "create_private_file", "private_dir", "secure_data_dir", "tighten"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p`` with mode 0700 for what it creates, and ``path`` itself made 0700 if it is not."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path)
    return path


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then only its mode is fixed)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        tighten(path)


def tighten(path: Path) -> None:
    """Drop group and other permissions from ``path`` (not following a symlink: it may point at shared files)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
        return
    os.chmod(path, DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data dir 0700. If it exists with looser modes (an older version), tighten everything in it,
    once: later starts find it 0700 and skip the walk. Symlinked entries (a shared weights dir) are left alone."""
    existed = data_dir.exists()
    loose = existed and bool(os.stat(data_dir).st_mode & 0o077)
    private_dir(data_dir)
    if not loose:
        return
    for root, dirs, files in os.walk(data_dir):  # does not descend into symlinked directories
        for name in (*dirs, *files):
            tighten(Path(root) / name)
