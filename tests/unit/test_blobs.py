"""storage.blobs: LocalBlobStore writes atomically; a crash mid-write never leaves a visible partial blob."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mistral_gateway.storage.blobs import BlobNotFound, LocalBlobStore

MB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def visible_blobs(store: LocalBlobStore) -> list[Path]:
    """Every file under the store's root except in-progress writes."""
    return [p for p in store.root.rglob("*") if p.is_file() and store.tmp_dir not in p.parents]


def parts(store: LocalBlobStore) -> list[Path]:
    return sorted(store.tmp_dir.glob("*.part"))


def test_a_committed_blob_lives_under_its_key_prefix(store: LocalBlobStore) -> None:
    # the round trip itself (size, hash, read, exists) is the contract test's, run on this store too
    w = store.writer()
    w.write(b"hello world")
    info = w.commit()
    assert store.path_for(info.key) == store.root / info.key[:2] / info.key
    assert store.path_for(info.key).read_bytes() == b"hello world"
    assert parts(store) == []


def test_read_in_chunks(store: LocalBlobStore) -> None:
    data = os.urandom(10_000)
    w = store.writer()
    w.write(data)
    key = w.commit().key
    chunks = list(store.read(key, chunk_size=4096))
    assert [len(c) for c in chunks] == [4096, 4096, 1808]
    assert b"".join(chunks) == data


def test_large_blob_hash_and_size(store: LocalBlobStore) -> None:
    h = hashlib.sha256()
    w = store.writer()
    for i in range(3):
        chunk = bytes([i]) * MB
        w.write(chunk)
        h.update(chunk)
    info = w.commit()
    assert info.size == 3 * MB
    assert info.sha256 == h.hexdigest()
    assert store.path_for(info.key).stat().st_size == 3 * MB


def test_empty_blob(store: LocalBlobStore) -> None:
    info = store.writer().commit()
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    assert b"".join(store.read(info.key)) == b""


def test_keys_are_unique(store: LocalBlobStore) -> None:
    keys = {store.writer().key for _ in range(50)}
    assert len(keys) == 50
    for w_key in keys:
        assert w_key.isalnum()


def test_abort_leaves_nothing(store: LocalBlobStore) -> None:
    w = store.writer()
    w.write(b"x" * 1000)
    assert len(parts(store)) == 1
    w.abort()
    assert parts(store) == []
    assert visible_blobs(store) == []
    assert not store.exists(w.key)
    w.abort()  # idempotent


def test_abort_after_commit_keeps_the_blob(store: LocalBlobStore) -> None:
    w = store.writer()
    w.write(b"keep")
    info = w.commit()
    w.abort()
    assert store.exists(info.key)
    assert b"".join(store.read(info.key)) == b"keep"


def test_partial_blob_is_never_visible(store: LocalBlobStore) -> None:
    w = store.writer()
    w.write(b"half of it")
    assert not store.exists(w.key)
    with pytest.raises(BlobNotFound):
        store.read(w.key)
    assert visible_blobs(store) == []
    w.commit()
    assert store.exists(w.key)


def test_delete(store: LocalBlobStore) -> None:
    w = store.writer()
    w.write(b"bye")
    key = w.commit().key
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.read(key)
    store.delete(key)  # deleting a missing blob is not an error


def test_read_missing(store: LocalBlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.read("0" * 32)
    assert issubclass(BlobNotFound, KeyError)


@pytest.mark.parametrize("key", ["../../etc/passwd", "..", ".", "", "ab/cd", "/abs", ".tmp", "a.part", "a b",
                                 "x\x00y", "..\\x"])
def test_path_traversal_keys_rejected(store: LocalBlobStore, tmp_path: Path, key: str) -> None:
    outside = tmp_path / "secret"
    outside.write_text("do not touch")
    with pytest.raises(BlobNotFound):
        store.path_for(key)
    with pytest.raises(BlobNotFound):
        store.read(key)
    with pytest.raises(BlobNotFound):
        store.delete(key)
    with contextlib.suppress(BlobNotFound):  # rejecting the key outright is as good as "not there"
        assert store.exists(key) is False
    assert outside.read_text() == "do not touch"


def test_sweep_removes_dead_and_unnamed_parts_but_not_own(store: LocalBlobStore) -> None:
    live = store.writer()
    live.write(b"in progress")
    dead_pid = _dead_pid()
    (store.tmp_dir / f"{dead_pid}-deadbeef.part").write_bytes(b"left by a crash")
    (store.tmp_dir / "garbage.part").write_bytes(b"?")
    (store.tmp_dir / "unrelated.txt").write_bytes(b"not a part")
    assert store.sweep_partials() == 2
    remaining = {p.name for p in store.tmp_dir.iterdir()}
    assert remaining == {f"{os.getpid()}-{live.key}.part", "unrelated.txt"}
    live.write(b" and still writable")
    info = live.commit()
    assert b"".join(store.read(info.key)) == b"in progress and still writable"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- crash safety with real processes ------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from mistral_gateway.storage.blobs import LocalBlobStore

    store = LocalBlobStore(Path(sys.argv[1]))
    w = store.writer()
    for _ in range(int(sys.argv[3])):
        w.write(b"z" * (1024 * 1024))
    w._fh.flush()
    print(w.key, flush=True)
    mode = sys.argv[2]
    if mode == "exit":
        os._exit(3)
    time.sleep(60)  # "wait": killed (or ended) by the parent
""")


def _spawn(store: LocalBlobStore, mode: str, megabytes: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(store.root), mode, str(megabytes)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    key = proc.stdout.readline().strip()
    assert key.isalnum(), f"child did not report a key (exit {proc.poll()})"
    return proc, key


def test_sigkill_mid_write_leaves_no_visible_blob(store: LocalBlobStore) -> None:
    proc, key = _spawn(store, "wait", 4)
    part = store.tmp_dir / f"{proc.pid}-{key}.part"
    assert part.stat().st_size == 4 * MB
    assert store.sweep_partials() == 0, "a live writer's part must not be swept"
    assert part.exists()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    proc.stdout.close()  # type: ignore[union-attr]

    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.read(key)
    assert visible_blobs(store) == []
    assert part.exists(), "the crash leaves its .part behind"

    own = store.writer()  # this process is alive: its part stays
    own.write(b"mine")
    assert store.sweep_partials() == 1
    assert not part.exists()
    assert parts(store) == [store.tmp_dir / f"{os.getpid()}-{own.key}.part"]
    own.abort()


def test_exit_before_commit_leaves_no_visible_blob(store: LocalBlobStore) -> None:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(store.root), "exit", "2"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 3, proc.stderr
    key = proc.stdout.strip()
    assert key.isalnum()
    assert not store.exists(key)
    assert visible_blobs(store) == []
    leftovers = parts(store)
    assert len(leftovers) == 1
    assert leftovers[0].name.endswith(f"-{key}.part")
    assert leftovers[0].stat().st_size == 2 * MB
    assert store.sweep_partials() == 1
    assert parts(store) == []


def test_sweep_keeps_other_live_process_part(store: LocalBlobStore) -> None:
    proc, key = _spawn(store, "wait", 1)
    try:
        (store.tmp_dir / f"{_dead_pid()}-cafe.part").write_bytes(b"dead")
        assert store.sweep_partials() == 1
        assert [p.name for p in parts(store)] == [f"{proc.pid}-{key}.part"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert store.sweep_partials() == 1
    assert parts(store) == []
