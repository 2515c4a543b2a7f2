"""Library documents ingested for real through a live server: uploaded over HTTP, processed by the ``library_ingest``
job with the real OCR engine (rapidocr, PDFium) and the real embedding model (all-MiniLM-L6-v2). A text-layer PDF, a
scanned page inside a PDF, a DOCX and an HTML page each end ``done`` with their words in the extracted text and
their chunks searchable; bad documents end ``error`` with the reason, or are refused at upload."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from library_samples import blank_png, docx, encrypted_pdf, html_page, paragraph, table, zip_of
from mistral_gateway.config import Settings
from mistral_gateway.services.container import Services
from ocr_samples import scan_pdf, text_pdf
from support import LiveServer, serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

Stack = tuple[LiveServer, Services, httpx.Client]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Stack]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("library-real"), weights_path=weights_dir,
                        bootstrap_dev_token=False)  # the default catalog: the real OCR and embedding models
    with serving(settings, "library") as (server, services, token), httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        yield server, services, http


@pytest.fixture(scope="module")
def library_id(stack: Stack) -> str:
    r = stack[2].post("/v1/libraries", json={"name": "real documents", "chunk_size": 400})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def upload(http: httpx.Client, library_id: str, name: str, data: bytes) -> httpx.Response:
    return http.post(f"/v1/libraries/{library_id}/documents", files={"file": (name, data)})


def processed(http: httpx.Client, library_id: str, document_id: str) -> dict[str, Any]:
    for _ in range(1200):  # a bound, not a timing: the job ends long before on any machine
        body = http.get(f"/v1/libraries/{library_id}/documents/{document_id}").json()
        if body["process_status"] in ("done", "error"):
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"document {document_id} still {body['process_status']}")


def ingest(stack: Stack, library_id: str, name: str, data: bytes) -> tuple[dict[str, Any], str]:
    _, services, http = stack
    r = upload(http, library_id, name, data)
    assert r.status_code == 201, r.text
    body = processed(http, library_id, r.json()["id"])
    record = services.libraries.repo.document(body["id"])  # type: ignore[union-attr]
    assert record is not None
    text = services.libraries.text_content(record.workspace_id, library_id, body["id"]).text \
        if body["process_status"] == "done" else ""
    return body, text


def test_a_text_layer_pdf_is_read_from_its_layer(stack: Stack, library_id: str) -> None:
    sample = text_pdf()
    body, text = ingest(stack, library_id, "report.pdf", sample.data)
    assert (body["process_status"], body["mime_type"], body["extension"]) == ("done", "application/pdf", "pdf")
    assert (body["number_of_pages"], body["processing_status"]) == (1, "Completed")
    assert text.startswith("# Quarterly Report\n\n## Introduction\n\nThe gateway reads documents")
    assert body["tokens_processing_total"] > 0


def test_a_scanned_page_is_recognised(stack: Stack, library_id: str) -> None:
    body, text = ingest(stack, library_id, "scan.pdf", scan_pdf(text_pdf()))
    assert (body["process_status"], body["number_of_pages"]) == ("done", 1)
    for word in ("Quarterly", "Report", "gateway", "markdown", "recognizer", "bounding"):
        assert word in text, text


def test_docx_and_html_are_read_with_their_structure(stack: Stack, library_id: str) -> None:
    body, text = ingest(stack, library_id, "fleet.docx", docx(
        paragraph("Fleet report", "Title") + paragraph("The harbour master counted nineteen trawlers.") +
        table([["Port", "Trawlers"], ["Lorient", "19"]])))
    assert (body["process_status"], body["extension"]) == ("done", "docx")
    assert text == ("# Fleet report\n\nThe harbour master counted nineteen trawlers.\n\n"
                    "| Port | Trawlers |\n| --- | --- |\n| Lorient | 19 |")
    body, text = ingest(stack, library_id, "tides.html", html_page(
        "<nav>Home</nav><h2>Tides</h2><p>The spring tide at Saint-Malo rises thirteen metres.</p>").encode())
    assert (body["process_status"], body["mime_type"]) == ("done", "text/html")
    assert text == "## Tides\n\nThe spring tide at Saint-Malo rises thirteen metres."


def test_a_long_document_is_chunked_and_every_chunk_indexed(stack: Stack, library_id: str) -> None:
    _, services, _ = stack
    sections = "".join(f"## Section {i}\n\n" + f"Harbour {i} has {i + 3} berths and a pilot station. " * 8 + "\n\n"
                       for i in range(6))
    body, text = ingest(stack, library_id, "harbours.md", ("# Harbours\n\n" + sections).encode())
    assert body["process_status"] == "done" and "Harbour 5 has 8 berths" in text
    record = services.libraries.repo.document(body["id"])  # type: ignore[union-attr]
    assert record is not None and record.chunks is not None and record.chunks >= 6  # 400-character chunks


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n garbage", "not a readable PDF"),
    ("locked.pdf", encrypted_pdf(text_pdf().data), "encrypted"),
    ("blank.png", blank_png(), "no text could be extracted"),
    ("fake.docx", zip_of({"notes.txt": "x" * 100_000, "other.txt": "y"}, stored=("notes.txt",)),
     "no word/document.xml"),
])
def test_unreadable_documents_end_in_error_with_the_reason(stack: Stack, library_id: str, name: str, data: bytes,
                                                           reason: str) -> None:
    body, _ = ingest(stack, library_id, name, data)
    assert body["process_status"] == "error"
    assert body["processing_status"].startswith("Failed: ") and reason in body["processing_status"], body


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("archive.zip", zip_of({"a.txt": "hello"}), "a ZIP archive, not a DOCX document"),
    ("tool.exe", b"MZ\x90\x00" + bytes(200), "Windows executable"),
    ("book.xlsx", docx("", kind="spreadsheetml.sheet"), "Excel workbook"),
])
def test_unsupported_types_are_refused_at_upload(stack: Stack, library_id: str, name: str, data: bytes,
                                                 reason: str) -> None:
    r = upload(stack[2], library_id, name, data)
    assert r.status_code == 400
    assert r.json()["code"] == "UNSUPPORTED_DOCUMENT_TYPE" and reason in r.json()["message"]
