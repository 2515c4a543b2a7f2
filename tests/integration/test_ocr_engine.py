"""The real OCR engine (rapidocr's bundled PP-OCRv6 models, PDFium) on documents generated here with known text:
text-layer PDFs read exactly, scans (image-only PDF, PNG, multi-page TIFF) recognized, two columns in column order,
tables as tables, embedded images with their boxes and pixels, page selection, corrupt inputs refused, and the
models loaded from the wheel without any network access."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import InvalidInput, OcrOptions, OcrPage
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.engines.ocr import RapidOcrEngine
from ocr_samples import (
    LEFT,
    PAGE_WORDS,
    RIGHT,
    image_pdf,
    multi_page_pdf,
    scan_pdf,
    scan_png,
    similarity,
    small_print_pdf,
    stamped_scan_pdf,
    table_pdf,
    text_pdf,
    tiff_pages,
    two_column_pdf,
)

pytestmark = pytest.mark.slow

SCAN_SIMILARITY = 0.95  # measured 0.99-1.0 on these clean 150 dpi pages


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RapidOcrEngine]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("ocr"), bootstrap_dev_token=False)  # the default catalog
    entry = next(e for e in settings.models if "mistral-ocr-latest" in e.aliases)
    assert kind_of(entry) == "ocr"
    manager = EngineManager(settings)
    loaded = asyncio.run(manager.ocr(entry))
    assert isinstance(loaded, RapidOcrEngine)
    yield loaded
    manager.close()


def read(engine: RapidOcrEngine, data: bytes, **options: Any) -> list[OcrPage]:
    return asyncio.run(engine.read(data, OcrOptions(**options)))


def test_a_text_layer_pdf_is_read_exactly_with_headings_by_font_size(engine: RapidOcrEngine) -> None:
    sample = text_pdf()
    [page] = read(engine, sample.data)
    assert similarity(sample.text, page.markdown) == 1.0
    assert page.markdown.startswith("# Quarterly Report\n\n## Introduction\n\nThe gateway reads")
    assert (page.index, page.width, page.height, page.dpi) == (0, 1275, 1650, 150)
    assert page.images == () and page.tables == ()


def test_an_image_only_pdf_is_recognized(engine: RapidOcrEngine) -> None:
    sample = text_pdf()
    [page] = read(engine, scan_pdf(sample))
    assert similarity(sample.text, page.markdown) >= SCAN_SIMILARITY, page.markdown
    assert page.markdown.startswith("# Quarterly Report")  # the title is twice the body's height
    assert page.images == ()  # the scan itself is not an image of the page
    assert (page.width, page.height, page.dpi) == (1275, 1651, 150)


def test_a_scan_with_a_text_stamp_is_recognized_not_read_as_its_stamp(engine: RapidOcrEngine) -> None:
    sample = text_pdf()
    [page] = read(engine, stamped_scan_pdf(sample, "Received 12 May"))
    assert page.markdown.startswith("# Quarterly Report"), page.markdown
    assert similarity(sample.text + " Received 12 May", page.markdown) >= SCAN_SIMILARITY, page.markdown
    assert page.images == ()  # the page-sized picture is the scan


def test_a_webp_image_is_recognized(engine: RapidOcrEngine) -> None:
    png = Image.open(io.BytesIO(scan_png(multi_page_pdf())))
    out = io.BytesIO()
    png.save(out, "WEBP", quality=90)
    [page] = read(engine, out.getvalue())
    assert similarity(f"This is page 0: {PAGE_WORDS[0]}.", page.markdown) >= SCAN_SIMILARITY, page.markdown


def test_a_jpeg_is_read_upright_as_its_exif_orientation_says(engine: RapidOcrEngine) -> None:
    sideways = Image.open(io.BytesIO(scan_png(multi_page_pdf()))).rotate(90, expand=True).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view (the page was stored turned the other way)
    out = io.BytesIO()
    sideways.save(out, "JPEG", quality=90, exif=exif.tobytes())
    [page] = read(engine, out.getvalue())
    assert (page.width, page.height) == (1275, 1651)
    assert similarity(f"This is page 0: {PAGE_WORDS[0]}.", page.markdown) >= SCAN_SIMILARITY, page.markdown


def test_a_png_with_known_text_is_recognized(engine: RapidOcrEngine) -> None:
    sample = text_pdf()
    [page] = read(engine, scan_png(sample))
    assert similarity(sample.text, page.markdown) >= SCAN_SIMILARITY, page.markdown
    assert (page.width, page.height) == (1275, 1651)


def test_fine_print_survives_the_detector_s_scaling(engine: RapidOcrEngine) -> None:
    sample = small_print_pdf(5)  # 10 px high at 150 dpi; detection sees the page at 1280 px (960 lost it)
    [page] = read(engine, scan_png(sample))
    assert similarity(sample.text, page.markdown) >= SCAN_SIMILARITY, page.markdown


@pytest.mark.parametrize("scanned", [False, True], ids=["text-layer", "scanned"])
def test_two_columns_are_read_column_by_column(engine: RapidOcrEngine, scanned: bool) -> None:
    sample = two_column_pdf()
    [page] = read(engine, scan_png(sample) if scanned else sample.data)
    md = page.markdown
    assert similarity(sample.text, md) >= (SCAN_SIMILARITY if scanned else 1.0), md
    # the whole left column (its last line included) comes before the right column's first line
    assert md.index(LEFT[-1].split()[-1]) < md.index(RIGHT[0].split()[0]), md
    assert md.index(LEFT[0].split()[0]) < md.index(LEFT[1].split()[0])


@pytest.mark.parametrize("scanned", [False, True], ids=["text-layer", "scanned"])
def test_a_grid_is_a_markdown_table(engine: RapidOcrEngine, scanned: bool) -> None:
    sample = table_pdf()
    [page] = read(engine, scan_pdf(sample) if scanned else sample.data)
    rows = [r for r in page.markdown.splitlines() if r.startswith("|")]
    assert rows[:2] == ["| Item | Quantity | Price |", "| --- | --- | --- |"], page.markdown
    assert rows[2:] == ["| Apples | 12 | 3.50 |", "| Pears | 7 | 2.10 |", "| Plums | 30 | 4.75 |"]
    assert page.markdown.rstrip().endswith("Prices are in euros per kilogram.")


def test_tables_can_be_separate_in_html(engine: RapidOcrEngine) -> None:
    [page] = read(engine, table_pdf().data, table_format="html")
    [table] = page.tables
    assert (table.id, table.format) == ("tbl-0.html", "html")
    assert "[tbl-0.html](tbl-0.html)" in page.markdown and "|" not in page.markdown
    assert "<th>Quantity</th>" in table.content and "<td>4.75</td>" in table.content


def test_embedded_images_are_extracted_with_their_boxes_and_pixels(engine: RapidOcrEngine) -> None:
    [page] = read(engine, image_pdf().data, include_image_base64=True)
    picture, icon = page.images
    # 200x100 pt at (72, 130) pt, and 10x10 pt at (500, 700) pt, in pixels at 150 dpi
    assert (picture.id, picture.top_left_x, picture.top_left_y, picture.bottom_right_x, picture.bottom_right_y) == (
        "img-0.jpeg", 150, 271, 567, 479)
    assert (icon.id, icon.top_left_x, icon.top_left_y) == ("img-1.jpeg", 1042, 1458)
    assert page.markdown == ("A chart of the results follows.\n\n![img-0.jpeg](img-0.jpeg)\n\n"
                             "The chart shows steady growth.\n\n![img-1.jpeg](img-1.jpeg)")
    prefix, _, data = (picture.image_base64 or "").partition(",")
    assert prefix == "data:image/jpeg;base64"
    decoded = Image.open(io.BytesIO(base64.b64decode(data)))
    assert (decoded.format, decoded.size) == ("JPEG", (400, 200))  # the image's own pixels


def test_image_min_size_and_limit_are_honoured(engine: RapidOcrEngine) -> None:
    [page] = read(engine, image_pdf().data, image_min_size=50)
    assert [i.id for i in page.images] == ["img-0.jpeg"] and page.images[0].image_base64 is None
    assert "img-1" not in page.markdown
    [page] = read(engine, image_pdf().data, image_limit=1)
    assert [i.id for i in page.images] == ["img-0.jpeg"]
    [page] = read(engine, image_pdf().data, image_limit=0)
    assert page.images == () and "![" not in page.markdown


def test_pages_are_selected_and_returned_in_the_order_asked(engine: RapidOcrEngine) -> None:
    pages = read(engine, multi_page_pdf().data, pages=(3, 1))
    assert [p.index for p in pages] == [3, 1]
    assert [p.markdown for p in pages] == [f"This is page 3: {PAGE_WORDS[3]}.", f"This is page 1: {PAGE_WORDS[1]}."]


def test_a_scanned_document_runs_its_pages_in_parallel_in_order(engine: RapidOcrEngine) -> None:
    sample = multi_page_pdf()
    pages = read(engine, scan_pdf(sample), pages=(0, 1, 2, 3))
    assert [p.index for p in pages] == [0, 1, 2, 3]
    for p in pages:
        assert similarity(f"This is page {p.index}: {PAGE_WORDS[p.index]}.", p.markdown) >= SCAN_SIMILARITY


def test_a_multi_page_tiff_has_one_page_per_frame(engine: RapidOcrEngine) -> None:
    pages = read(engine, tiff_pages(multi_page_pdf()), pages=(4, 0))
    assert [p.index for p in pages] == [4, 0]
    assert PAGE_WORDS[4] in pages[0].markdown and PAGE_WORDS[0] in pages[1].markdown


@pytest.mark.parametrize(("data", "message"), [
    (b"just some text, no document", "neither a PDF nor a PNG"),
    (b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer <<>>\n%%EOF", "not a readable PDF"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable PNG"),
], ids=["garbage", "corrupt-pdf", "corrupt-png"])
def test_corrupt_documents_are_invalid_input(engine: RapidOcrEngine, data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read(engine, data)


def test_a_truncated_image_is_invalid_input(engine: RapidOcrEngine) -> None:
    png = scan_png(text_pdf())
    with pytest.raises(InvalidInput, match="cannot be decoded"):
        read(engine, png[: len(png) // 2])


def test_a_page_outside_the_document_is_invalid_input(engine: RapidOcrEngine) -> None:
    with pytest.raises(InvalidInput, match="page 9 does not exist: the document has 5 pages"):
        read(engine, multi_page_pdf().data, pages=(9,))


def test_the_engine_loads_its_models_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the OCR engine tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    engine = RapidOcrEngine(workers=1, threads=1, dpi=150, max_pixels=5000 * 5000)
    try:
        assert engine.load_seconds > 0
        [page] = read(engine, scan_png(multi_page_pdf()))
        assert PAGE_WORDS[0] in page.markdown
    finally:
        engine.close()


def test_an_image_over_the_pixel_bound_is_refused() -> None:
    engine = RapidOcrEngine(workers=1, threads=1, dpi=150, max_pixels=1000 * 1000)
    try:
        with pytest.raises(InvalidInput, match="page 0 is 1275x1651 pixels; the limit is 1000000"):
            read(engine, scan_png(text_pdf()))
        [page] = read(engine, text_pdf().data)  # a PDF page is rendered smaller instead
        assert page.width * page.height <= 1000 * 1000 and page.dpi < 150
        assert page.markdown.startswith("# Quarterly Report")
    finally:
        engine.close()
