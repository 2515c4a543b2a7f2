"""Libraries through the official SDK (mistralai 3.7.0, ``client.beta.libraries`` and its ``documents``) against a
real server on loopback, documents embedded by the real local embedding model (all-MiniLM-L6-v2 as
``mistral-embed``): every call sync and async, the SDK's errors for bad input, and the SDK's own two libraries
examples run as published with only the server URL added.

If the SDK rejects an answer, the server's shape is wrong: these tests are the compatibility contract.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError
from mistralai.client.models import File

from mistral_gateway.config import Settings
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MIRROR = Path(os.environ.get("MISTRAL_SDK_REPO", "/work/.mirror/mistralai+client-python/repo"))
HANDBOOK = (b"# Harbour handbook\n\nThe ferry to the lighthouse leaves at 7:15 every morning from pier four.\n\n"
            b"Visitors must sign the logbook at the harbour master's office before boarding.\n")
PENDING = ("todo", "in_progress")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[str, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("libraries-sdk") / "data", weights_path=weights_dir,
                        bootstrap_dev_token=False)
    with serving(settings) as (live, _services, token):
        yield live.base_url, token


def client_of(server: tuple[str, str]) -> Mistral:
    """A fresh client (an async one's connections belong to the loop that opened them)."""
    return Mistral(api_key=server[1], server_url=server[0], timeout_ms=120_000)


def settle(get_status: Any) -> Any:
    """Poll ``get_status()`` until processing has ended (a bounded wait, not a timing check)."""
    for _ in range(1200):
        status = get_status()
        if status.process_status not in PENDING:
            return status
        time.sleep(0.1)
    raise AssertionError(f"still {status.process_status}")


def test_libraries_and_documents_sync(server: tuple[str, str]) -> None:
    with client_of(server) as sdk:
        _sync_lifecycle(sdk.beta.libraries, sdk.beta.libraries.documents)


def _sync_lifecycle(libraries: Any, documents: Any) -> None:
    library = libraries.create(name="Harbour", description="Port rules", chunk_size=400)
    assert (library.name, library.description, library.chunk_size, library.nb_documents) == (
        "Harbour", "Port rules", 400, 0)
    assert library.id in [lib.id for lib in libraries.list().data]

    doc = documents.upload(library_id=library.id, file=File(file_name="handbook.md", content=HANDBOOK))
    assert (doc.name, doc.size, doc.mime_type, doc.library_id) == ("handbook.md", len(HANDBOOK), "text/markdown",
                                                                   library.id)
    again = documents.upload(library_id=library.id, file=File(file_name="copy.md", content=HANDBOOK))
    assert again.id == doc.id  # the same bytes: the same document (a 200)
    status = settle(lambda: documents.status(library_id=library.id, document_id=doc.id))
    assert (status.document_id, status.process_status, status.processing_status) == (doc.id, "done", "Completed")
    got = documents.get(library_id=library.id, document_id=doc.id)
    assert got.process_status == "done" and got.tokens_processing_total > 0 and got.last_processed_at is not None
    assert documents.text_content(library_id=library.id, document_id=doc.id).text == HANDBOOK.decode()

    listed = documents.list(library_id=library.id, search="HAND", page_size=10, sort_by="name", sort_order="asc")
    assert [d.id for d in listed.data] == [doc.id] and listed.pagination.total_items == 1
    fetched = libraries.get(library_id=library.id)
    assert (fetched.nb_documents, fetched.total_size) == (1, len(HANDBOOK))
    assert libraries.update(library_id=library.id, name="Harbour rules").name == "Harbour rules"

    renamed = documents.update(library_id=library.id, document_id=doc.id, name="rules.md",
                               attributes={"year": 2024, "tags": ["ferry", "pier"], "public": True})
    assert (renamed.name, renamed.attributes) == ("rules.md", {"year": 2024, "tags": ["ferry", "pier"],
                                                               "public": True})
    assert documents.reprocess(library_id=library.id, document_id=doc.id) is None
    assert settle(lambda: documents.status(library_id=library.id, document_id=doc.id)).process_status == "done"
    assert documents.get(library_id=library.id, document_id=doc.id).name == "rules.md"  # kept through reprocess

    assert documents.delete(library_id=library.id, document_id=doc.id) is None
    with pytest.raises(MistralError) as gone:
        documents.get(library_id=library.id, document_id=doc.id)
    assert gone.value.status_code == 404
    deleted = libraries.delete(library_id=library.id)
    assert deleted is not None and deleted.id == library.id
    with pytest.raises(MistralError) as gone:
        libraries.get(library_id=library.id)
    assert gone.value.status_code == 404


def test_libraries_and_documents_async(server: tuple[str, str]) -> None:
    async def run() -> None:
        async with client_of(server) as client:
            libraries, documents = client.beta.libraries, client.beta.libraries.documents
            library = await libraries.create_async(name="Async harbour")
            assert library.id in [lib.id for lib in (await libraries.list_async()).data]
            assert (await libraries.get_async(library_id=library.id)).name == "Async harbour"
            assert (await libraries.update_async(library_id=library.id, description="d")).description == "d"
            doc = await documents.upload_async(library_id=library.id,
                                               file=File(file_name="handbook.txt", content=HANDBOOK))
            # asked at once: the server waits for the processing, as the SDK's example expects
            text = await documents.text_content_async(library_id=library.id, document_id=doc.id)
            assert text.text == HANDBOOK.decode()
            status = await documents.status_async(library_id=library.id, document_id=doc.id)
            assert status.process_status == "done"
            assert [d.id for d in (await documents.list_async(library_id=library.id)).data] == [doc.id]
            assert (await documents.get_async(library_id=library.id, document_id=doc.id)).process_status == "done"
            updated = await documents.update_async(library_id=library.id, document_id=doc.id, name="async.txt")
            assert updated.name == "async.txt"
            assert await documents.reprocess_async(library_id=library.id, document_id=doc.id) is None
            assert await documents.delete_async(library_id=library.id, document_id=doc.id) is None
            assert (await libraries.delete_async(library_id=library.id)).id == library.id  # type: ignore[union-attr]

    asyncio.run(run())


def test_bad_input_is_a_clear_error_through_the_sdk(server: tuple[str, str]) -> None:
    with client_of(server) as sdk:
        _bad_input(sdk.beta.libraries, sdk.beta.libraries.documents)


def _bad_input(libraries: Any, documents: Any) -> None:
    library = libraries.create(name="Errors")
    cases = [
        (lambda: documents.upload(library_id=library.id, file=File(file_name="a.bin", content=b"\x7fELF\x00\xff" * 9)),
         400, "UNSUPPORTED_DOCUMENT_TYPE"),
        (lambda: documents.upload(library_id=library.id, file=File(file_name="empty.md", content=b"")), 400,
         "EMPTY_DOCUMENT"),
        (lambda: documents.get(library_id=library.id, document_id="00000000-0000-4000-8000-000000000000"), 404,
         "DOCUMENT_NOT_FOUND"),
        (lambda: libraries.get(library_id="not-a-library"), 404, "LIBRARY_NOT_FOUND"),
        (lambda: documents.list(library_id=library.id, page_size=1000), None, None),
        (lambda: libraries.create(name=""), None, None),
    ]
    for call, status, code in cases:
        with pytest.raises(MistralError) as err:
            call()
        assert 400 <= err.value.status_code < 500, err.value.body
        if status is not None:
            assert err.value.status_code == status and code in err.value.body, err.value.body
    libraries.delete(library_id=library.id)


def _example(name: str) -> str:
    if not MIRROR.exists():
        pytest.skip(f"the SDK mirror {MIRROR} is not here (MISTRAL_SDK_REPO)")
    return subprocess.run(["git", "--git-dir", str(MIRROR), "show", f"HEAD:examples/mistral/libraries/{name}"],
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("name", ["libraries.py", "async_libraries.py"])
def test_the_sdks_libraries_examples(server: tuple[str, str], tmp_path: Path, name: str) -> None:
    """As published but for one line: ``Mistral(api_key=...)`` gets ``server_url``; run where they open
    ``examples/fixtures/lorem_ipsum.md`` (taken from the SDK mirror)."""
    source = _example(name).replace("Mistral(api_key=api_key)", f"Mistral(api_key=api_key, server_url={server[0]!r})")
    assert f"server_url={server[0]!r}" in source, f"{name}: no client construction to point at the server"
    fixture = tmp_path / "examples" / "fixtures" / "lorem_ipsum.md"
    fixture.parent.mkdir(parents=True)
    blob = "HEAD:examples/fixtures/lorem_ipsum.md"
    fixture.write_bytes(subprocess.run(["git", "--git-dir", str(MIRROR), "show", blob], check=True,
                                       capture_output=True).stdout)
    (tmp_path / name).write_text(source)
    done = subprocess.run([sys.executable, name], cwd=tmp_path, env={**os.environ, "MISTRAL_API_KEY": server[1]},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lorem = fixture.read_text()
    assert "renamed_file.md" in done.stdout and lorem.split()[0] in done.stdout  # renamed; its text printed
