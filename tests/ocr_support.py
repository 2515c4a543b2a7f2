"""OCR test helpers: the OCR model on the fake OCR engine for tests that need one in a fake-engine catalog, and
documents the fake engine reads (UTF-8 text, pages separated by form feeds) as data URLs."""

from __future__ import annotations

import base64
import io

from mistral_gateway.config import ModelEntry

__all__ = ["OCR_MODEL", "data_url", "white_png", "with_fake_ocr"]

OCR_MODEL = "mistral-ocr-latest"


def with_fake_ocr(models: list[ModelEntry]) -> list[ModelEntry]:
    """``models`` (already on fake engines) plus a fake OCR entry unless one of them serves OCR."""
    if any("ocr" in m.capabilities for m in models):
        return models
    return [*models, ModelEntry(id="ocr-fake", aliases=[OCR_MODEL], engine="fake", capabilities=["ocr"])]


def data_url(text: str | bytes, mime: str = "application/pdf") -> str:
    raw = text.encode() if isinstance(text, str) else text
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def white_png(size: int = 64) -> str:
    """A blank page image as a data URL (the real engine reads it as a page without text)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), "white").save(out, "PNG")
    return data_url(out.getvalue(), "image/png")
