"""The data dir is owner-only: directories 0700, files 0600 (the database and its WAL, blobs, epochs, keys), for a
new install and, repaired at start, for a data dir an older version left 0755/0644. Symlinked shared dirs are left
alone."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistral_gateway.config import Settings
from mistral_gateway.fileops import atomic_write_text, exclusive_lock
from mistral_gateway.services.container import build_services

JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022, under which files used to come out 0644 and directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes(root: Path) -> dict[str, int]:
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(dirpath) / name
            if not path.is_symlink():
                found[str(path.relative_to(root))] = mode(path)
    return found


def use(data_dir: Path) -> None:
    """Start the services, write a token, a usage row's worth of database pages and a blob, and stop."""
    svc = build_services(Settings(data_dir=data_dir, bootstrap_dev_token=False))
    try:
        svc.tokens.create("t")
        sink = svc.files.open_upload()
        sink.write(JSONL)
        workspace = svc.tokens.list()[0].workspace_id
        svc.files.finish_upload(workspace, sink, filename="a.jsonl", purpose="fine-tune")
        assert (data_dir / "gateway.db-wal").exists()  # checked while the WAL is open
        assert mode(data_dir / "gateway.db-wal") == mode(data_dir / "gateway.db-shm") == 0o600
    finally:
        svc.close()


def assert_private(data_dir: Path) -> None:
    assert mode(data_dir) == 0o700
    found = modes(data_dir)
    for name in ("gateway.db", "signing.key", "tokens.epoch", "models.epoch"):
        assert found.pop(name) == 0o600, name
    blobs = [name for name in found if name.startswith("blobs/") and len(name.split("/")) == 3
             and not name.startswith("blobs/.tmp")]
    assert blobs, found
    loose = {name: oct(m) for name, m in found.items() if m & 0o077}
    assert loose == {}


def test_a_new_data_dir_is_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    use(data_dir)
    assert_private(data_dir)


def test_an_old_data_dir_is_repaired_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "blobs" / "ab").mkdir(parents=True)  # as an older version left it: 0755 and 0644
    sqlite3.connect(data_dir / "gateway.db").close()
    (data_dir / "blobs" / "ab" / "ab12").write_bytes(b"old upload")
    (data_dir / "tokens.epoch").write_text("1\n")
    (data_dir / "dev-token").write_text("at_x\n")
    shared = tmp_path / "shared-weights"
    shared.mkdir()
    (shared / "model.gguf").write_bytes(b"w")
    (data_dir / "weights").symlink_to(shared)
    assert mode(data_dir) == 0o755 and mode(data_dir / "gateway.db") == 0o644

    use(data_dir)

    assert_private(data_dir)
    assert mode(data_dir / "blobs" / "ab" / "ab12") == 0o600 and mode(data_dir / "dev-token") == 0o600
    assert mode(shared) == 0o755 and mode(shared / "model.gguf") == 0o644  # not ours to change


def test_weights_markers_and_locks_are_owner_only(tmp_path: Path) -> None:
    marker = tmp_path / "m.json"
    atomic_write_text(marker, "{}")
    with exclusive_lock(tmp_path / "m.lock"):
        pass
    assert mode(marker) == mode(tmp_path / "m.lock") == 0o600
