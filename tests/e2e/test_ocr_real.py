"""OCR end to end on the real engine (rapidocr with its bundled models, pypdfium2) through the official SDK against a
live server: a PNG with known text sent inline, an image-only two-page PDF uploaded as a file with a page
selection, and a document annotation by the real smallest chat model (SmolLM2-135M behind ministral-3b-latest)."""

from __future__ import annotations

import base64
import difflib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from mistralai.client import Mistral
from mistralai.extra import response_format_from_pydantic_model
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, Field

from mistral_gateway.config import Settings
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

LINES = ("Invoice number 4521", "Total due 380 euros")


class Invoice(BaseModel):
    number: str = Field(max_length=12)  # bounded: the constrained answer ends well within its token budget


def page(lines: tuple[str, ...] | list[str]) -> Image.Image:
    """A white A6-ish page at 150 dpi with ``lines`` in a large sans font."""
    image = Image.new("RGB", (900, 500), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for i, line in enumerate(lines):
        draw.text((60, 80 + i * 110), line, fill="black", font=font)
    return image


def encoded(image: Image.Image | list[Image.Image], kind: str) -> bytes:
    out = io.BytesIO()
    if isinstance(image, list):
        image[0].save(out, kind, save_all=True, append_images=image[1:], resolution=150)
    else:
        image.save(out, kind)
    return out.getvalue()


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, " ".join(a.lower().split()), " ".join(b.lower().split())).ratio()


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Mistral]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("ocr-real") / "data", weights_path=weights_dir,
                        bootstrap_dev_token=False, ocr_annotation_model="ministral-3b-latest",
                        ocr_annotation_max_tokens=64)
    with serving(settings) as (server, _services, token), \
            Mistral(api_key=token, server_url=server.base_url, timeout_ms=300_000) as client:
        yield client


def test_png_inline(sdk: Mistral) -> None:
    png = base64.b64encode(encoded(page(LINES), "PNG")).decode()
    res = sdk.ocr.process(model="mistral-ocr-latest", document={"type": "image_url",
                                                                "image_url": f"data:image/png;base64,{png}"})
    assert len(res.pages) == 1 and res.pages[0].index == 0
    assert similarity(res.pages[0].markdown, " ".join(LINES)) >= 0.9, res.pages[0].markdown
    assert res.pages[0].dimensions is not None and res.pages[0].dimensions.width > 0
    assert res.usage_info.pages_processed == 1


def test_scanned_pdf_file_with_pages(sdk: Mistral) -> None:
    pdf = encoded([page(["First page here"]), page(["Second page text"]), page(["Third page words"])], "PDF")
    uploaded = sdk.files.upload(file={"file_name": "scan.pdf", "content": pdf}, purpose="ocr")
    res = sdk.ocr.process(model="mistral-ocr-2512", document={"type": "file", "file_id": uploaded.id}, pages="1-2")
    assert [p.index for p in res.pages] == [1, 2]
    assert similarity(res.pages[0].markdown, "Second page text") >= 0.9, res.pages[0].markdown
    assert similarity(res.pages[1].markdown, "Third page words") >= 0.9, res.pages[1].markdown
    assert res.usage_info.doc_size_bytes == len(pdf)


def test_document_annotation_by_the_real_chat_model(sdk: Mistral) -> None:
    png = base64.b64encode(encoded(page(LINES), "PNG")).decode()
    res = sdk.ocr.process(model="mistral-ocr-latest", document={"image_url": f"data:image/png;base64,{png}"},
                          document_annotation_format=response_format_from_pydantic_model(Invoice),
                          document_annotation_prompt="The invoice number.")
    assert res.document_annotation is not None
    Invoice.model_validate_json(res.document_annotation)  # constrained output: always parses against the schema
