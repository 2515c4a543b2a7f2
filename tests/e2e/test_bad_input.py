"""Bad input over real HTTP: broken multipart, oversize uploads, foreign and unknown ids, dead tokens and URLs,
badly typed query strings. Every refused upload must leave nothing behind (no row, no blob, no partial file).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from mistral_gateway.config import Settings
from mistral_gateway.registry import Registry
from mistral_gateway.security.signing import UrlSigner, load_or_create_secret
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.services.files import FileService
from mistral_gateway.services.tokens import TokenService
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.tokens import TokenRepository

pytestmark = pytest.mark.e2e
# Tests that store or look up rows run on SQLite and PostgreSQL; those refused while parsing run on SQLite alone.
BOTH_BACKENDS = pytest.mark.usefixtures("database_backend")

JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
BOUNDARY = "gatewayboundary42"


@pytest.fixture
def clock(clock: Any) -> Any:
    """The shared settable clock, started at the real time (tokens and files are also dated by it)."""
    clock.now = time.time()
    return clock


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest, app_database: str | None) -> Settings:
    """As the shared fixture; ``@pytest.mark.parametrize("settings", [{...}], indirect=True)`` overrides fields."""
    return Settings(data_dir=tmp_path / "data", database_url=app_database, bootstrap_dev_token=False,
                    **getattr(request, "param", {}))


@pytest.fixture
def services(settings: Settings, clock: Any) -> Iterator[Services]:
    """The real services, with token expiry and signed URLs on a clock the test controls."""
    svc = build_services(settings)
    svc.tokens = TokenService(TokenRepository(svc.db), FileEpoch(settings.data_dir / "tokens.epoch"),
                              valid_scopes=svc.registry.scopes, clock=clock)
    svc.files = FileService(FileRepository(svc.db), svc.blobs,
                            UrlSigner(load_or_create_secret(settings.data_dir / "signing.key")),
                            max_upload_bytes=settings.max_upload_bytes,
                            signed_url_max_hours=settings.signed_url_max_hours, clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def http(live_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=20) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def native_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["object"] == "error" and isinstance(body["message"], str)
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_nothing_stored(http: httpx.Client, token: str, settings: Settings) -> None:
    listing = http.get("/v1/files", headers=bearer(token)).json()
    assert listing["data"] == [] and listing["total"] == 0
    blob_dir = settings.blob_dir
    assert [p.name for p in blob_dir.iterdir()] == [".tmp"]
    assert list((blob_dir / ".tmp").iterdir()) == []


def upload(http: httpx.Client, token: str, name: str = "train.jsonl", content: bytes = JSONL,
           purpose: str = "fine-tune") -> str:
    r = http.post("/v1/files", headers=bearer(token), files={"file": (name, content)}, data={"purpose": purpose})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def multipart(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# -- malformed multipart ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content_type", "body", "code"), [
    pytest.param(MULTIPART, multipart(("purpose", None, b"fine-tune"), ("file", "a.jsonl", JSONL), close=False),
                 "MALFORMED_MULTIPART", id="truncated-no-closing-boundary"),
    pytest.param(MULTIPART, multipart(("file", "a.jsonl", JSONL))[:40], "MALFORMED_MULTIPART",
                 id="truncated-in-headers"),
    pytest.param("multipart/form-data", multipart(("file", "a.jsonl", JSONL)), "MALFORMED_MULTIPART",
                 id="no-boundary"),
    pytest.param(MULTIPART, b"this is not multipart at all", "MALFORMED_MULTIPART", id="garbage"),
    pytest.param(MULTIPART, multipart(("purpose", None, b"fine-tune")), "MISSING_FILE", id="no-file-part"),
    pytest.param(MULTIPART, multipart(("file", None, JSONL)), "MISSING_FILE", id="file-part-without-filename"),
    pytest.param(MULTIPART, multipart(("file", "a.jsonl", JSONL), ("file", "b.jsonl", JSONL)),
                 "MALFORMED_MULTIPART", id="two-file-parts"),
    pytest.param("application/json", b'{"file": "a.jsonl"}', "INVALID_CONTENT_TYPE", id="json-instead"),
])
def test_malformed_multipart_is_400(http: httpx.Client, token: str, settings: Settings, content_type: str,
                                    body: bytes, code: str) -> None:
    r = http.post("/v1/files", headers=bearer(token) | {"Content-Type": content_type}, content=body)
    native_error(r, 400, code)
    assert_nothing_stored(http, token, settings)


@BOTH_BACKENDS
@pytest.mark.parametrize(("name", "content", "purpose", "code"), [
    ("train.jsonl", b"", "fine-tune", "EMPTY_FILE"),
    ("train.txt", b"hello\n", "fine-tune", "INVALID_FILE_TYPE"),
    ("train.jsonl", JSONL, "no-such-purpose", "INVALID_PURPOSE"),
])
def test_refused_upload_leaves_nothing(http: httpx.Client, token: str, settings: Settings, name: str,
                                       content: bytes, purpose: str, code: str) -> None:
    r = http.post("/v1/files", headers=bearer(token), files={"file": (name, content)}, data={"purpose": purpose})
    native_error(r, 400, code)
    assert_nothing_stored(http, token, settings)


# -- oversize uploads -------------------------------------------------------------------------------------------

def _chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'.encode()
    yield head
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"x" * n
        sent += n
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@BOTH_BACKENDS
@pytest.mark.parametrize("settings", [{"max_upload_bytes": 1024}], indirect=True)
@pytest.mark.parametrize("how", ["declared-length", "declared-length-huge", "chunked"])
def test_oversize_upload_is_413(http: httpx.Client, token: str, settings: Settings, how: str) -> None:
    if how == "declared-length":  # the file streams into the store until the limit is crossed
        r = http.post("/v1/files", headers=bearer(token),
                      files={"file": ("big.jsonl", b'{"text": "x"}\n' * 200)}, data={"purpose": "fine-tune"})
    elif how == "declared-length-huge":  # refused on the declared Content-Length, before the body is read
        r = http.post("/v1/files", headers=bearer(token),
                      files={"file": ("big.jsonl", b"x" * (1024 * 1024 + 4096))}, data={"purpose": "fine-tune"})
    else:  # no Content-Length: the limit is enforced on the stream itself
        r = http.post("/v1/files", headers=bearer(token) | {"Content-Type": MULTIPART}, content=_chunks(64 * 1024))
    native_error(r, 413, "FILE_TOO_LARGE")
    assert_nothing_stored(http, token, settings)
    # At the limit exactly is fine.
    assert upload(http, token, content=b"x" * 1023 + b"\n", purpose="ocr", name="edge.txt")


@BOTH_BACKENDS
@pytest.mark.parametrize("settings", [{"max_upload_bytes": 1024}], indirect=True)
def test_oversize_lowcode_upload_is_413_in_the_envelope(http: httpx.Client, token: str, settings: Settings) -> None:
    r = http.post("/mistralai/v1/files", params={"api_token": token}, files={"file": ("big.jsonl", b"x" * 4096)})
    assert r.status_code == 413
    assert r.json() == {"data": {"error": {"message": r.json()["data"]["error"]["message"],
                                           "code": "FILE_TOO_LARGE"}}}
    assert_nothing_stored(http, token, settings)


# -- ids that do not resolve ------------------------------------------------------------------------------------

@BOTH_BACKENDS
def test_unknown_file_is_404(http: httpx.Client, token: str) -> None:
    for file_id in (str(uuid.uuid4()), "not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "%00"):
        for suffix in ("", "/content", "/url"):
            native_error(http.get(f"/v1/files/{file_id}{suffix}", headers=bearer(token)), 404)


@BOTH_BACKENDS
def test_unknown_file_delete_is_404(http: httpx.Client, token: str) -> None:
    native_error(http.delete(f"/v1/files/{uuid.uuid4()}", headers=bearer(token)), 404, "FILE_NOT_FOUND")


@BOTH_BACKENDS
def test_another_workspaces_file_is_404_not_403(http: httpx.Client, make_token: Any) -> None:
    alice, bob = make_token("alice", workspace="alice"), make_token("bob", workspace="bob")
    file_id = upload(http, alice)
    for method, suffix in [("GET", ""), ("GET", "/content"), ("GET", "/url"), ("DELETE", "")]:
        r = http.request(method, f"/v1/files/{file_id}{suffix}", headers=bearer(bob))
        native_error(r, 404, "FILE_NOT_FOUND")
        r = http.request(method, f"/mistralai/v1/files/{file_id}{suffix}", params={"api_token": bob})
        assert r.status_code == 404 and r.json()["data"]["error"]["code"] == "FILE_NOT_FOUND"
    assert http.get("/v1/files", headers=bearer(bob)).json()["data"] == []
    assert http.get(f"/v1/files/{file_id}", headers=bearer(alice)).status_code == 200  # bob deleted nothing


@BOTH_BACKENDS
def test_expired_file_is_gone(http: httpx.Client, token: str, clock: Any) -> None:
    r = http.post("/v1/files", headers=bearer(token), files={"file": ("t.jsonl", JSONL)}, data={"expiry": "1"})
    assert r.status_code == 200, r.text
    file_id = r.json()["id"]
    clock.advance(3599)
    assert http.get(f"/v1/files/{file_id}", headers=bearer(token)).status_code == 200
    clock.advance(2)
    for suffix in ("", "/content", "/url"):
        native_error(http.get(f"/v1/files/{file_id}{suffix}", headers=bearer(token)), 404, "FILE_NOT_FOUND")
    assert http.get("/v1/files", headers=bearer(token)).json()["total"] == 0


# -- tokens that stopped working --------------------------------------------------------------------------------

@BOTH_BACKENDS
def test_revoked_token_is_401_immediately(http: httpx.Client, services: Services) -> None:
    token, record = services.tokens.create("soon-revoked")
    for _ in range(2):  # the second request is served from the verified-token cache
        assert http.get("/v1/models", headers=bearer(token)).status_code == 200
    services.tokens.revoke(record.id)
    native_error(http.get("/v1/models", headers=bearer(token)), 401, "TOKEN_REVOKED")
    r = http.get("/mistralai/v1/models", params={"api_token": token})
    assert r.status_code == 401 and r.json()["data"]["error"]["code"] == "TOKEN_REVOKED"


@BOTH_BACKENDS
def test_expired_token_is_401(http: httpx.Client, services: Services, clock: Any) -> None:
    used, _ = services.tokens.create("used", expires_in=60)
    unused, _ = services.tokens.create("unused", expires_in=60)
    assert http.get("/v1/models", headers=bearer(used)).status_code == 200  # now cached
    clock.advance(59)
    assert http.get("/v1/models", headers=bearer(used)).status_code == 200
    clock.advance(2)
    native_error(http.get("/v1/models", headers=bearer(used)), 401, "TOKEN_EXPIRED")
    native_error(http.get("/v1/models", headers=bearer(unused)), 401, "TOKEN_EXPIRED")


# -- signed URLs ------------------------------------------------------------------------------------------------

def signed_url(http: httpx.Client, token: str, expiry: int = 1) -> tuple[str, str]:
    file_id = upload(http, token)
    r = http.get(f"/v1/files/{file_id}/url", headers=bearer(token), params={"expiry": expiry})
    assert r.status_code == 200, r.text
    return file_id, r.json()["url"]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


@BOTH_BACKENDS
def test_tampered_signed_url_is_403(http: httpx.Client, token: str, make_token: Any) -> None:
    file_id, url = signed_url(http, token)
    assert httpx.get(url).content == JSONL
    query = dict(parse_qsl(urlsplit(url).query))
    other_id = upload(http, token, name="other.jsonl")
    flipped = ("A" if query["signature"][0] != "A" else "B") + query["signature"][1:]
    tampered = [
        with_query(url, signature=flipped),
        with_query(url, signature=""),
        with_query(url, expires=str(int(query["expires"]) + 3600)),  # a longer life is not for sale
        with_query(url, expires="soon"),
        with_query(url, ws=uuid.uuid4().hex),
        url.replace(file_id, other_id),
        url.split("?")[0],
    ]
    for bad in tampered:
        r = httpx.get(bad)
        native_error(r, 403)
        assert r.json()["code"] == "INVALID_SIGNATURE"


@BOTH_BACKENDS
def test_expired_signed_url_is_403(http: httpx.Client, token: str, clock: Any) -> None:
    _, url = signed_url(http, token, expiry=1)
    clock.advance(3599)
    assert httpx.get(url).content == JSONL
    clock.advance(2)
    native_error(httpx.get(url), 403, "SIGNED_URL_EXPIRED")


@BOTH_BACKENDS
def test_signed_url_of_a_deleted_file_is_404(http: httpx.Client, token: str) -> None:
    file_id, url = signed_url(http, token)
    assert http.delete(f"/v1/files/{file_id}", headers=bearer(token)).status_code == 200
    native_error(httpx.get(url), 404)


@BOTH_BACKENDS
def test_signed_url_expiry_out_of_range(http: httpx.Client, token: str) -> None:
    file_id = upload(http, token)
    for expiry in ("0", "-1", "169", "100000"):  # 1..168 hours
        r = http.get(f"/v1/files/{file_id}/url", headers=bearer(token), params={"expiry": expiry})
        assert r.status_code in (400, 422), r.text
        assert r.json()["param" if r.status_code == 400 else "detail"]


# -- query strings of the wrong type ----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "params", "field"), [
    ("/v1/files", {"page": "abc"}, "page"),
    ("/v1/files", {"page": "-1"}, "page"),
    ("/v1/files", {"page_size": "0"}, "page_size"),
    ("/v1/files", {"include_total": "maybe"}, "include_total"),
    ("/v1/files", {"sample_type": "nonsense"}, "sample_type"),
])
def test_bad_query_is_422(http: httpx.Client, token: str, path: str, params: dict[str, str], field: str) -> None:
    native = http.get(path, headers=bearer(token), params=params)
    assert native.status_code == 422, native.text
    detail = native.json()["detail"]
    assert set(native.json()) == {"detail"}
    assert detail and all({"loc", "msg", "type"} <= set(item) for item in detail)
    assert detail[0]["loc"][:2] == ["query", field]

    lowcode = http.get("/mistralai" + path, params=params | {"api_token": token})
    assert lowcode.status_code == 422
    error = lowcode.json()["data"]["error"]
    assert set(lowcode.json()) == {"data"} and set(lowcode.json()["data"]) == {"error"}
    assert error["code"] == "VALIDATION_ERROR"
    assert isinstance(error["message"], str) and field in error["message"]
    assert error["detail"] == detail


@BOTH_BACKENDS
def test_bad_query_on_signed_url_is_422(http: httpx.Client, token: str) -> None:
    file_id = upload(http, token)
    r = http.get(f"/v1/files/{file_id}/url", headers=bearer(token), params={"expiry": "abc"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "expiry"]


JSON_OPS = [op for op in Registry.load() if op.implemented and op.body == "json"]


@pytest.mark.parametrize("op_id", [op.id for op in JSON_OPS] or [
    pytest.param("none", marks=pytest.mark.skip(reason="no JSON-body operation is implemented yet"))])
def test_malformed_json_body_is_400(http: httpx.Client, token: str, op_id: str) -> None:
    op = Registry.load().get(op_id)
    path = op.path.format(**{p.name: str(uuid.uuid4()) for p in op.path_params})
    r = http.request(op.method, path, headers=bearer(token) | {"Content-Type": "application/json"},
                     content=b'{"model": ')
    native_error(r, 400, "MALFORMED_JSON")
