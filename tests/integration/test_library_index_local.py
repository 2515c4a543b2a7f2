"""What only the local index has: its files in the data dir (modes, a version 1 file upgraded), the in-memory
matrices (reloaded only when a library changed, bounded), and another process writing the same data dir."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mistral_gateway.storage.library_index import IndexedChunk
from mistral_gateway.storage.library_index_local import LocalChunkIndex


def vector(*weights: float, dims: int = 8) -> np.ndarray:
    v = np.zeros(dims, dtype=np.float32)
    v[:len(weights)] = weights
    return v / np.linalg.norm(v)


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "libraries" / "index.sqlite"
    index = LocalChunkIndex(path)
    index.replace("lib", "doc", [IndexedChunk(0, "text", vector(1))])
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    files = [p for p in path.parent.iterdir()]
    assert {p.name for p in files} >= {"index.sqlite", "index.sqlite-wal"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    index.close()


def test_matrix_reloaded_only_when_the_library_changed(tmp_path: Path) -> None:
    index = LocalChunkIndex(tmp_path / "index.sqlite")
    index.replace("a", "doc", [IndexedChunk(0, "a", vector(1))])
    index.replace("b", "doc2", [IndexedChunk(0, "b", vector(1))])
    index.search(["a", "b"], "", vector(1), 5)
    first = dict(index._cache)
    index.search(["a", "b"], "", vector(1), 5)
    assert index._cache["a"] is first["a"] and index._cache["b"] is first["b"]
    index.replace("b", "doc3", [IndexedChunk(0, "b2", vector(1))])
    index.search(["a", "b"], "", vector(1), 5)
    assert index._cache["a"] is first["a"] and index._cache["b"] is not first["b"]
    index.close()


def test_memory_is_bounded_by_evicting_the_least_recently_searched(tmp_path: Path) -> None:
    per_library = 100 * (8 * 4 + 8)  # 100 chunks: their vectors and ids
    index = LocalChunkIndex(tmp_path / "index.sqlite", cache_bytes=2 * per_library)
    for name in "abc":
        index.replace(name, f"doc-{name}", [IndexedChunk(i, f"{name} {i}", vector(1, i)) for i in range(100)])
    for name in "abc":
        assert len(index.search([name], "", vector(1), 3)) == 3
    assert list(index._cache) == ["b", "c"]
    assert [h.library_id for h in index.search(["a"], "", vector(1), 1)] == ["a"]  # reloaded on demand
    assert list(index._cache) == ["c", "a"]
    index.close()


def test_another_process_writing_the_same_data_dir_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    index = LocalChunkIndex(path)
    index.replace("lib", "doc", [IndexedChunk(0, "from this process", vector(1))])
    assert [h.text for h in index.search(["lib"], "", vector(1), 5)] == ["from this process"]
    script = textwrap.dedent(f"""
        import numpy as np
        from mistral_gateway.storage.library_index import IndexedChunk
        from mistral_gateway.storage.library_index_local import LocalChunkIndex
        index = LocalChunkIndex(__import__("pathlib").Path({str(path)!r}))
        v = np.zeros(8, dtype=np.float32); v[0] = 1
        for i in range(20):  # writes while the parent reads
            index.replace("lib", "doc", [IndexedChunk(0, f"from the other process {{i}}", v)])
        index.close()
    """)
    other = subprocess.Popen([sys.executable, "-c", script], env={"PYTHONPATH": ":".join(sys.path)})
    while other.poll() is None:
        hits = index.search(["lib"], "process", vector(1), 5)
        assert len(hits) == 1 and "process" in hits[0].text
    assert other.returncode == 0
    assert [h.text for h in index.search(["lib"], "", vector(1), 5)] == ["from the other process 19"]
    index.close()


def test_a_version_1_file_is_upgraded_keeping_its_chunks(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with sqlite3.connect(path) as db:  # the schema the first release wrote
        db.executescript("""
            CREATE TABLE chunks (library_id TEXT NOT NULL, document_id TEXT NOT NULL, idx INTEGER NOT NULL,
                page INTEGER, text TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (document_id, idx));
            CREATE INDEX chunks_library ON chunks (library_id);
            CREATE TABLE versions (library_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
            INSERT INTO versions VALUES ('lib', 1);""")
        db.execute("INSERT INTO chunks VALUES ('lib', 'doc', 0, 2, 'kept through the upgrade', ?)",
                   (vector(1).tobytes(),))
    db.close()
    index = LocalChunkIndex(path)
    hits = index.search(["lib"], "upgrade", vector(1), 5)
    assert [(h.document_id, h.index, h.page, h.text) for h in hits] == [("doc", 0, 2, "kept through the upgrade")]
    index.close()
    index = LocalChunkIndex(path)  # opened again: nothing to upgrade
    assert len(index.search(["lib"], "upgrade", vector(1), 5)) == 1
    index.close()


def test_keyword_scoring_keeps_the_rarest_terms_within_its_budget(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mistral_gateway.storage import library_index

    monkeypatch.setattr(library_index, "MAX_KEYWORD_POSTINGS", 3)
    index = LocalChunkIndex(tmp_path / "index.sqlite")
    index.replace("lib", "doc", [IndexedChunk(i, f"common words {'rare' if i == 4 else ''} {'mid' * (i < 2)}",
                                              vector(1, i)) for i in range(6)])
    db = index._connect()
    assert index._affordable_terms(db, ["common", "rare", "absent", "mid"]) == ["rare", "mid"]
    assert index._affordable_terms(db, ["common", "words"]) == []  # each alone is over the budget
    hits = index.search(["lib"], "common rare", vector(0, 1), 1)  # the vector points elsewhere; "rare" decides
    assert [h.index for h in hits] == [4]
    index.close()
