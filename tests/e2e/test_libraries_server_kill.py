"""A library document survives its server's SIGKILL: a ``mistral-gateway serve`` process is killed while it embeds
an uploaded document with the real MiniLM; the next server on the same data dir takes the job up again once its
lease has lapsed, and the document ends ``done`` with each of its chunks in the index exactly once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import load_settings
from mistral_gateway.services.container import build_services
from mistral_gateway.services.library_text import ExtractedText, split_chunks
from mistral_gateway.storage.libraries import LibraryRepository
from support import CLI, clean_env, free_port, short_lease_config, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOUND = 300.0  # seconds any wait may take before the test calls it a hang (not a timing assertion)
CHUNK_SIZE = 200
# ~600 chunks of distinct sentences: several seconds of embedding on this machine, so the kill lands mid-way
TEXT = "".join(f"Entry {i}: the tide table for berth {i % 37} lists {i * 7 % 101} boats before noon.\n"
               for i in range(1500))


def start_server(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)],
                                env=clean_env(), stdout=out, stderr=out)


def wait_for(check: Callable[[], Any], alive: subprocess.Popen[bytes], what: str) -> Any:
    deadline = time.monotonic() + BOUND
    while not (found := check()):
        assert time.monotonic() < deadline, f"never {what}"
        assert alive.poll() is None, f"the server exited with {alive.returncode} before {what}"
        time.sleep(0.05)
    return found


def test_a_document_processed_when_the_server_is_killed_still_ends_done(tmp_path: Path, weights_dir: Path) -> None:
    config = short_lease_config(tmp_path, weights_dir)
    settings = load_settings(config)
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    servers: list[subprocess.Popen[bytes]] = []
    services = build_services(settings)  # the same database: a token, and a look at the document's row
    token, _ = services.tokens.create("kill")
    repo = LibraryRepository(services.db)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        first = start_server(config, port, tmp_path / "server1.log")
        servers.append(first)
        wait_for(lambda: _healthy(base), first, "healthy")
        library = httpx.post(f"{base}/libraries", headers=auth, json={"name": "tides", "chunk_size": CHUNK_SIZE})
        assert library.status_code == 201, library.text
        library_id = library.json()["id"]
        upload = httpx.post(f"{base}/libraries/{library_id}/documents", headers=auth,
                            files={"file": ("tides.txt", TEXT.encode())}, timeout=60)
        assert upload.status_code == 201, upload.text
        document_id = upload.json()["id"]

        def status() -> str:
            record = repo.document(document_id)
            assert record is not None
            return record.process_status

        wait_for(lambda: status() == "in_progress", first, "in_progress")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert status() == "in_progress"  # killed mid-way, not after the end

        second = start_server(config, port, tmp_path / "server2.log")
        servers.append(second)
        wait_for(lambda: _healthy(base), second, "healthy again")
        wait_for(lambda: status() not in ("todo", "in_progress"), second, "processed after the restart")
        doc = httpx.get(f"{base}/libraries/{library_id}/documents/{document_id}", headers=auth).json()
        text = httpx.get(f"{base}/libraries/{library_id}/documents/{document_id}/text_content", headers=auth,
                         timeout=60).json()["text"]
    finally:
        services.close()
        for proc in servers:
            stop_process(proc)

    assert (doc["process_status"], doc["processing_status"]) == ("done", "Completed"), doc
    assert text == TEXT
    expected = split_chunks(ExtractedText(TEXT), CHUNK_SIZE)
    services = build_services(settings)
    record = LibraryRepository(services.db).document(document_id)
    assert record is not None and record.chunks == len(expected) > 500
    jobs, _ = services.jobs.list(record.workspace_id, kind="library_ingest")
    services.close()
    assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 2)]  # the killed attempt, then the one that ended
    with sqlite3.connect(settings.data_dir / "libraries" / "index.sqlite") as db:  # the local index's own rows
        rows = db.execute("SELECT document_id, idx FROM chunks WHERE library_id = ?", (library_id,)).fetchall()
    assert sorted(idx for _, idx in rows) == list(range(len(expected)))  # every chunk once: none lost, none twice
    assert {document for document, _ in rows} == {document_id}


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base.removesuffix("/v1") + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
