"""Refusals stay small: repeated multipart parts are counted, text fields are capped, and no error (413, 400 or
422) echoes a large value back, in either dialect."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_integer_ranges import DIALECTS, JSONL, assert_refused, call

from mistral_gateway.config import Settings, default_models
from mistral_gateway.services.container import Services


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    models = [m.model_copy(update={"engine": "fake"}) for m in default_models()]
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=models)


@pytest.fixture
def token(services: Services) -> str:
    return services.tokens.create("t", scopes=["*"])[0]


def multipart(*parts: tuple[str, bytes, str | None]) -> tuple[bytes, str]:
    boundary = "noechoboundary"
    chunks = []
    for name, value, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_repeated_purpose_parts_are_refused(client: TestClient, token: str, dialect: str) -> None:
    raw, ctype = multipart(("file", JSONL, "t.jsonl"), *[("purpose", b"batch", None)] * 200)
    r = call(client, token, dialect, "POST", "/v1/files", content=raw, headers_extra=ctype)
    assert r.status_code == 400
    assert_refused(r, dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_large_purpose_is_refused_without_echo(client: TestClient, token: str, dialect: str) -> None:
    raw, ctype = multipart(("file", JSONL, "t.jsonl"), ("purpose", b"SECRET" + b"p" * 64 * 1024, None))
    r = call(client, token, dialect, "POST", "/v1/files", content=raw, headers_extra=ctype)
    assert r.status_code == 413
    assert_refused(r, dialect)
    assert b"SECRET" not in r.content


@pytest.mark.parametrize("dialect", DIALECTS)
def test_invalid_purpose_echo_is_short(client: TestClient, token: str, dialect: str) -> None:
    raw, ctype = multipart(("file", JSONL, "t.jsonl"), ("purpose", b"x" * 3000, None))
    r = call(client, token, dialect, "POST", "/v1/files", content=raw, headers_extra=ctype)
    assert r.status_code == 400
    assert_refused(r, dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_422_does_not_echo_a_multi_megabyte_input(client: TestClient, token: str, dialect: str) -> None:
    big = "w" * (3 * 1024 * 1024)
    for body in ({"model": "mistral-embed", "input": {"text": big}},  # wrong type: pydantic echoes the input
                 {"model": "ministral-3b-latest", "messages": [{"role": "nobody", "content": big}] * 3},
                 {"model": "ministral-3b-latest", "messages": big}):
        path = "/v1/embeddings" if "input" in body else "/v1/chat/completions"
        r = call(client, token, dialect, "POST", path, json=body)
        assert r.status_code == 422, r.text[:300]
        assert_refused(r, dialect)
