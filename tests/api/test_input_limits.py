"""Input limits, in both dialects. Every integer input has a range: huge, negative and oddly written integers get
a 4xx, never a 500 (they used to reach SQLite as ``OverflowError: Python int too large to convert to SQLite
INTEGER``). Refusals stay small: repeated multipart parts are counted, text fields are capped, and no error (413, 400
or 422) echoes a large value back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import Settings, default_models
from mistral_gateway.services.container import Services

HUGE = 99999999999999999999  # past int64
INT64_PLUS = 2**63
JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
DIALECTS = ("native", "lowcode")


# PostgreSQL's INTEGER is 32-bit where SQLite's holds 64: the ranges of values that reach the database are checked
# on both (refusals while parsing, on SQLite alone)
BOTH_BACKENDS = pytest.mark.usefixtures("database_backend")


@pytest.fixture
def settings(tmp_path: Path, app_database: str | None) -> Settings:
    models = [m.model_copy(update={"engine": "fake"}) for m in default_models()]
    return Settings(data_dir=tmp_path / "data", database_url=app_database, bootstrap_dev_token=False, models=models)


@pytest.fixture
def token(services: Services) -> str:
    return services.tokens.create("t", scopes=["*", "admin"])[0]


def call(client: TestClient, token: str, dialect: str, method: str, path: str, *, headers_extra: str | None = None,
         **kwargs: Any) -> httpx.Response:
    """``headers_extra``: a Content-Type for a raw body."""
    kwargs["headers"] = {"Content-Type": headers_extra} if headers_extra else {}
    if dialect == "native":
        kwargs["headers"]["Authorization"] = f"Bearer {token}"
        return client.request(method, path, **kwargs)
    kwargs["params"] = {**kwargs.get("params", {}), "api_token": token}
    return client.request(method, "/mistralai" + path, **kwargs)


def assert_refused(r: httpx.Response, dialect: str) -> None:
    """A 4xx in the dialect's error shape, echoing nothing long."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    body = r.json()
    if dialect == "native":
        assert "detail" in body or body.get("object") == "error", body
    else:
        assert set(body) == {"data"} and set(body["data"]) == {"error"}, body
        assert {"message", "code"} <= set(body["data"]["error"])
    assert len(r.content) < 4096


UPLOAD_EXPIRIES = [str(HUGE), "2562047788015216", str(INT64_PLUS), "-1", "0", "1" * 5000, "١٢", "12.5", "1e9"]


@BOTH_BACKENDS
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("expiry", UPLOAD_EXPIRIES)
def test_upload_expiry(client: TestClient, token: str, services: Services, dialect: str, expiry: str) -> None:
    r = call(client, token, dialect, "POST", "/v1/files", files={"file": ("t.jsonl", JSONL)},
             data={"purpose": "fine-tune", "expiry": expiry})
    assert_refused(r, dialect)
    assert not any(p.is_file() for p in services.settings.blob_dir.rglob("*")
                   if "tmp" not in p.parts and p.suffix != ".lock")


@BOTH_BACKENDS
@pytest.mark.parametrize("dialect", DIALECTS)
def test_upload_expiry_within_range_is_accepted(client: TestClient, token: str, dialect: str) -> None:
    r = call(client, token, dialect, "POST", "/v1/files", files={"file": ("t.jsonl", JSONL)},
             data={"purpose": "fine-tune", "expiry": "87600"})
    assert r.status_code == 200, r.text


QUERIES = [
    ("GET", "/v1/files", {"page": str(HUGE)}),
    ("GET", "/v1/files", {"page": str(INT64_PLUS)}),
    ("GET", "/v1/files", {"page": "-1"}),
    ("GET", "/v1/files", {"page_size": str(HUGE)}),
    ("GET", "/v1/files", {"page_size": "0"}),
    ("GET", "/v1/files", {"page": "1" * 5000}),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("method", "path", "params"), QUERIES)
def test_query_integers(client: TestClient, token: str, dialect: str, method: str, path: str,
                        params: dict[str, str]) -> None:
    assert_refused(call(client, token, dialect, method, path, params=params), dialect)


@BOTH_BACKENDS
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("expiry", [str(HUGE), str(INT64_PLUS), "-5", "0"])
def test_signed_url_expiry(client: TestClient, token: str, dialect: str, expiry: str) -> None:
    upload = call(client, token, "native", "POST", "/v1/files", files={"file": ("t.jsonl", JSONL)})
    file_id = upload.json()["id"]
    r = call(client, token, dialect, "GET", f"/v1/files/{file_id}/url", params={"expiry": expiry})
    assert_refused(r, dialect)


CHAT = {"model": "ministral-3b-latest", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
FIM = {"model": "codestral-latest", "prompt": "def f(", "max_tokens": 2}
EMBED = {"model": "mistral-embed", "input": "hello"}
BODIES = [
    ("/v1/chat/completions", CHAT, {"max_tokens": HUGE}),
    ("/v1/chat/completions", CHAT, {"max_tokens": INT64_PLUS}),
    ("/v1/chat/completions", CHAT, {"max_tokens": -1}),
    ("/v1/chat/completions", CHAT, {"random_seed": HUGE}),
    ("/v1/chat/completions", CHAT, {"random_seed": 2**32}),
    ("/v1/chat/completions", CHAT, {"random_seed": -1}),
    ("/v1/chat/completions", CHAT, {"seed": INT64_PLUS}),
    ("/v1/chat/completions", CHAT, {"n": HUGE}),
    ("/v1/chat/completions", CHAT, {"n": 0}),
    ("/v1/chat/completions", CHAT, {"min_tokens": HUGE}),
    ("/v1/fim/completions", FIM, {"max_tokens": HUGE}),
    ("/v1/fim/completions", FIM, {"random_seed": INT64_PLUS}),
    ("/v1/fim/completions", FIM, {"min_tokens": -3}),
    ("/v1/embeddings", EMBED, {"output_dimension": HUGE}),
    ("/v1/embeddings", EMBED, {"dimensions": INT64_PLUS}),
    ("/v1/embeddings", EMBED, {"output_dimension": -1}),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("path", "base", "extra"), BODIES)
def test_body_integers(client: TestClient, token: str, dialect: str, path: str, base: dict[str, Any],
                       extra: dict[str, Any]) -> None:
    r = call(client, token, dialect, "POST", path, json={**base, **extra})
    assert r.status_code == 422, r.text
    assert_refused(r, dialect)


def test_largest_seed_is_accepted(client: TestClient, token: str) -> None:
    r = call(client, token, "native", "POST", "/v1/chat/completions", json={**CHAT, "random_seed": 2**32 - 1})
    assert r.status_code == 200, r.text


ADMIN_BODIES = [{"expires_in": INT64_PLUS}, {"expires_in": HUGE}, {"expires_in": 0},
                {"requests_per_minute": HUGE}, {"tokens_per_minute": INT64_PLUS}, {"concurrent_requests": -1},
                {"scopes": ["models"] * 1000}]


@BOTH_BACKENDS
@pytest.mark.parametrize("extra", ADMIN_BODIES)
def test_admin_token_integers(client: TestClient, token: str, extra: dict[str, Any]) -> None:
    r = call(client, token, "native", "POST", "/admin/tokens", json={"name": "x", **extra})
    assert_refused(r, "native")


USAGE_QUERIES = [{"since": str(HUGE)}, {"since": f"{HUGE}w"}, {"since": "999999999999w"}, {"until": "1e400"},
                 {"since": "inf"}, {"since": "nan"}, {"since": "-5"}, {"since": "0001-01-01"},
                 {"since": "9" * 5000}, {"page": str(HUGE)}, {"limit": "1000", "page": str(2**63 - 1)},
                 {"limit": "0"}, {"page": "-1"}]


@BOTH_BACKENDS
@pytest.mark.parametrize("params", USAGE_QUERIES)
def test_admin_usage_integers(client: TestClient, token: str, params: dict[str, str]) -> None:
    r = call(client, token, "native", "GET", "/admin/usage", params=params)
    assert_refused(r, "native")


@BOTH_BACKENDS
def test_admin_usage_bounds_still_work(client: TestClient, token: str) -> None:
    ok = call(client, token, "native", "GET", "/admin/usage", params={"limit": "1000", "page": "1000000",
                                                                      "since": "0", "until": "9999-12-31"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"] == []


# -- multipart parts and echoes --------------------------------------------------------------------------------


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


@pytest.mark.parametrize("dialect", DIALECTS)
def test_not_found_does_not_echo_a_long_id(client: TestClient, token: str, dialect: str) -> None:
    r = call(client, token, dialect, "GET", "/v1/files/" + "f" * 20_000)
    assert r.status_code == 404
    assert_refused(r, dialect)


def test_admin_errors_do_not_echo_long_values(client: TestClient, token: str) -> None:
    r = call(client, token, "native", "DELETE", "/admin/tokens/tok_" + "x" * 20_000)
    assert r.status_code == 404
    assert_refused(r, "native")
    r = call(client, token, "native", "POST", "/admin/tokens", json={"name": "x", "scopes": ["s" * 100_000] * 60})
    assert r.status_code == 400
    assert_refused(r, "native")
