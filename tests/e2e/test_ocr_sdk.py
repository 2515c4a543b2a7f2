"""OCR through the official SDK (mistralai 3.7.0: ``client.ocr.process`` / ``process_async``, and a batch with
endpoint ``/v1/ocr``) against a live server on loopback, on the fake OCR engine (a document is UTF-8 text, pages
split by form feeds): the SDK sends its defaults (``include_blocks: true``) and parses every answer and error. The
LowCodeAPI dialect through the project's own client (``mistral_gateway.client``: ``client.ocr.process``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mistralai.client import Mistral
from mistralai.client.errors import HTTPValidationError, MistralError
from mistralai.extra import response_format_from_pydantic_model
from pydantic import BaseModel

from mistral_gateway.client import BadRequestError, Client
from mistral_gateway.config import Settings, default_models
from ocr_support import OCR_MODEL, data_url, with_fake_ocr
from support import serving

pytestmark = pytest.mark.e2e

DOCUMENT = "Quarterly report\n<img>\fRevenue grew\fOutlook"


class Report(BaseModel):
    title: str
    pages: int


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, token) of a live server on the fake engines."""
    models = with_fake_ocr([m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()])
    settings = Settings(data_dir=tmp_path_factory.mktemp("ocr-sdk") / "data", bootstrap_dev_token=False,
                        models=models)
    with serving(settings) as (server, _services, token):
        yield server.base_url, token


@pytest.fixture(scope="module")
def sdk(live: tuple[str, str]) -> Iterator[Mistral]:
    with Mistral(api_key=live[1], server_url=live[0], timeout_ms=30_000) as client:
        yield client


def test_document_url_with_images(sdk: Mistral) -> None:
    res = sdk.ocr.process(model=OCR_MODEL, include_image_base64=True, document={
        "type": "document_url", "document_url": data_url(DOCUMENT), "document_name": "report.pdf"})
    assert res.model == OCR_MODEL and [p.index for p in res.pages] == [0, 1, 2]
    first = res.pages[0]
    assert first.markdown == "Quarterly report\n![img-0.jpeg](img-0.jpeg)"
    assert first.images[0].id == "img-0.jpeg" and first.images[0].bottom_right_x == 10
    assert isinstance(first.images[0].image_base64, str) and first.images[0].image_base64.startswith("data:image/")
    assert first.dimensions is not None and first.dimensions.dpi == 72
    assert res.usage_info.pages_processed == 3 and res.usage_info.doc_size_bytes == len(DOCUMENT.encode())
    assert json.loads(res.model_dump_json())["pages"][1]["markdown"] == "Revenue grew"


def test_uploaded_file_and_image_url(sdk: Mistral) -> None:
    uploaded = sdk.files.upload(file={"file_name": "report", "content": DOCUMENT.encode()}, purpose="ocr")
    res = sdk.ocr.process(model=OCR_MODEL, document={"type": "file", "file_id": uploaded.id}, pages="1-2")
    assert [(p.index, p.markdown) for p in res.pages] == [(1, "Revenue grew"), (2, "Outlook")]
    res = sdk.ocr.process(model=None, document={"type": "image_url", "image_url": data_url("a scan", "image/png")},
                          pages=[0])
    assert res.model == OCR_MODEL and res.pages[0].markdown == "a scan"


def test_document_annotation(sdk: Mistral) -> None:
    res = sdk.ocr.process(model="mistral-ocr-2512", document={"document_url": data_url(DOCUMENT)},
                          document_annotation_format=response_format_from_pydantic_model(Report),
                          document_annotation_prompt="Give the report's title and page count.")
    assert res.model == "mistral-ocr-2512" and res.document_annotation is not None
    report = Report.model_validate_json(res.document_annotation)  # the fake chat engine's schema instance
    assert report == Report(title="x", pages=0)


def test_errors(sdk: Mistral) -> None:
    with pytest.raises(MistralError) as refused:
        sdk.ocr.process(model=OCR_MODEL, document={"document_url": data_url("x")},
                        bbox_annotation_format=response_format_from_pydantic_model(Report))
    assert refused.value.status_code == 400 and "vision model" in refused.value.body
    with pytest.raises(MistralError) as chat:
        sdk.ocr.process(model="mistral-small-latest", document={"document_url": data_url("x")})
    assert chat.value.status_code == 400 and "'ocr'" in chat.value.body
    with pytest.raises(MistralError) as missing:
        sdk.ocr.process(model=OCR_MODEL, document={"document_url": data_url("one page")}, pages=[4])
    assert missing.value.status_code == 400 and "INVALID_DOCUMENT" in missing.value.body
    with pytest.raises(HTTPValidationError):
        sdk.ocr.process(model=OCR_MODEL, document={"document_url": data_url("x")}, pages="4-1")


def test_process_async(sdk: Mistral) -> None:
    async def both() -> list[str]:
        runs = [sdk.ocr.process_async(model=OCR_MODEL, document={"document_url": data_url(f"doc {i}")})
                for i in range(2)]
        return [r.pages[0].markdown for r in await asyncio.gather(*runs)]

    assert asyncio.run(both()) == ["doc 0", "doc 1"]


def test_batch_of_ocr_requests(sdk: Mistral) -> None:
    lines = [{"custom_id": str(i), "body": {"document": {"type": "document_url", "document_url": data_url(DOCUMENT)},
                                            "pages": [i], "include_image_base64": False,
                                            "document_annotation_format": response_format_from_pydantic_model(
                                                Report)}} for i in range(3)]
    batch_file = sdk.files.upload(file={"file_name": "ocr_batch.jsonl", "content": "\n".join(
        json.dumps(line) for line in lines).encode()}, purpose="batch")
    job = sdk.batch.jobs.create(model=OCR_MODEL, input_files=[batch_file.id], endpoint="/v1/ocr")
    for _ in range(600):  # a bounded wait, not a timing check
        job = sdk.batch.jobs.get(job_id=job.id)
        if job.status in ("SUCCESS", "FAILED", "CANCELLED", "TIMEOUT_EXCEEDED"):
            break
        time.sleep(0.05)
    assert job.status == "SUCCESS" and job.succeeded_requests == 3 and job.output_file, job
    results = [json.loads(line) for line in sdk.files.download(file_id=job.output_file).read().decode().splitlines()]
    by_id = {r["custom_id"]: r["response"]["body"] for r in results}
    assert [by_id[str(i)]["pages"][0]["index"] for i in range(3)] == [0, 1, 2]
    assert all(Report.model_validate_json(body["document_annotation"]).title == "x" for body in by_id.values())


def test_lowcode_dialect_through_the_project_client(live: tuple[str, str], tmp_path: Path) -> None:
    with Client(live[0], live[1], cache_path=tmp_path / "formats.json") as client:
        uploaded = client.files.upload(DOCUMENT.encode(), filename="report.pdf", purpose="ocr")
        res = client.ocr.process(model=OCR_MODEL, document={"file_id": uploaded.id}, pages=[2, 0],
                                 include_image_base64=True)
        assert [(p.index, p.markdown) for p in res.pages] == [(2, "Outlook"),
                                                              (0, "Quarterly report\n![img-0.jpeg](img-0.jpeg)")]
        assert res.pages[1].images[0].image_base64 is not None and res.usage_info.pages_processed == 2
        with pytest.raises(BadRequestError) as refused:
            client.ocr.process(model=OCR_MODEL, document={"document_url": data_url("x")},
                               confidence_scores_granularity="word")
        assert refused.value.code == "UNSUPPORTED_OPTION"
