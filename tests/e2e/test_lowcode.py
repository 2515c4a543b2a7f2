"""The LowCodeAPI dialect over real HTTP: ``{"data": ...}`` envelopes, both URL formats, raw downloads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.e2e

JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
BINARY = bytes(range(256)) * 16


class LowCode:
    """A thin httpx client speaking the LowCodeAPI dialect (token as ?api_token=)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(base_url=base_url + "/mistralai", timeout=20)
        self.token = token

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, params={**(params or {}), "api_token": self.token}, **kwargs)

    def data(self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """A JSON success: checks the envelope and returns what is inside."""
        r = self.request(method, path, params, **kwargs)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"data"}, body
        return body["data"]

    def upload(self, name: str = "train.jsonl", content: bytes = JSONL, purpose: str = "fine-tune") -> dict[str, Any]:
        return self.data("POST", "/v1/files", files={"file": (name, content)}, data={"purpose": purpose})


@pytest.fixture
def lc(live_server: Any, token: str) -> Iterator[LowCode]:
    client = LowCode(live_server.base_url, token)
    yield client
    client.http.close()


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"data"} and set(body["data"]) == {"error"}
    error = body["data"]["error"]
    assert isinstance(error["message"], str) and isinstance(error["code"], str)
    return error


def test_upload_and_list_are_enveloped(lc: LowCode) -> None:
    out = lc.upload()
    assert out["object"] == "file" and out["filename"] == "train.jsonl" and out["bytes"] == len(JSONL)
    listing = lc.data("GET", "/v1/files")
    assert listing["object"] == "list" and listing["total"] == 1
    assert [f["id"] for f in listing["data"]] == [out["id"]]
    assert lc.data("GET", "/v1/files", {"purpose": "batch"})["data"] == []


@pytest.mark.parametrize("form", ["new", "old"])
def test_retrieve_file(lc: LowCode, form: str) -> None:
    file_id = lc.upload()["id"]
    if form == "new":
        body = lc.data("GET", f"/v1/files/{file_id}")
    else:
        body = lc.data("GET", "/v1/files/file_id", {"file_id": file_id})
    assert body["id"] == file_id and body["deleted"] is False


@pytest.mark.parametrize("form", ["new", "old"])
def test_download_is_raw_bytes(lc: LowCode, form: str) -> None:
    file_id = lc.upload("blob.bin", BINARY, "ocr")["id"]
    if form == "new":
        r = lc.request("GET", f"/v1/files/{file_id}/content")
    else:
        r = lc.request("GET", "/v1/files/file_id/content", {"file_id": file_id})
    assert r.status_code == 200
    assert r.content == BINARY  # not wrapped in an envelope
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == str(len(BINARY))
    assert r.headers["content-disposition"].startswith('attachment; filename="blob.bin"')


def test_download_keeps_a_non_ascii_filename(lc: LowCode) -> None:
    name = "données été.pdf"
    file_id = lc.upload(name, b"%PDF-1.4\n%%EOF\n", "ocr")["id"]
    r = lc.request("GET", f"/v1/files/{file_id}/content")
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    assert f"filename*=UTF-8''{quote(name)}" in disposition
    assert disposition.isascii()


@pytest.mark.parametrize("form", ["new", "old"])
def test_delete_file(lc: LowCode, form: str) -> None:
    file_id = lc.upload()["id"]
    if form == "new":
        body = lc.data("DELETE", f"/v1/files/{file_id}")
    else:
        body = lc.data("DELETE", "/v1/files/file_id", {"file_id": file_id})
    assert body == {"id": file_id, "object": "file", "deleted": True}
    error = error_of(lc.request("GET", f"/v1/files/{file_id}"), 404)
    assert error["code"] == "FILE_NOT_FOUND"
    assert lc.data("GET", "/v1/files")["data"] == []


@pytest.mark.parametrize("form", ["new", "old"])
def test_signed_url(lc: LowCode, form: str) -> None:
    file_id = lc.upload("blob.bin", BINARY, "ocr")["id"]
    if form == "new":
        body = lc.data("GET", f"/v1/files/{file_id}/url", {"expiry": 1})
    else:
        body = lc.data("GET", "/v1/files/file_id/url", {"file_id": file_id, "expiry": 1})
    assert set(body) == {"url"}
    r = httpx.get(body["url"])  # no token, no envelope
    assert r.status_code == 200
    assert r.content == BINARY


@pytest.mark.parametrize("form", ["new", "old"])
def test_retrieve_model(lc: LowCode, form: str) -> None:
    if form == "new":
        card = lc.data("GET", "/v1/models/codestral-latest")
    else:
        card = lc.data("GET", "/v1/models/model_id", {"model_id": "codestral-latest"})
    assert card["id"] == "codestral-latest" and card["type"] == "base" and card["object"] == "model"


@pytest.mark.parametrize("form", ["new", "old"])
def test_delete_base_model_is_403(lc: LowCode, form: str) -> None:
    if form == "new":
        r = lc.request("DELETE", "/v1/models/mistral-embed")
    else:
        r = lc.request("DELETE", "/v1/models/model_id", {"model_id": "mistral-embed"})
    assert error_of(r, 403)["code"] == "BASE_MODEL_NOT_DELETABLE"


def test_models_list(lc: LowCode) -> None:
    listing = lc.data("GET", "/v1/models")
    assert listing["object"] == "list"
    assert {"mistral-small-latest", "codestral-latest", "mistral-embed"} <= {m["id"] for m in listing["data"]}


def test_x_api_token_header(live_server: Any, token: str) -> None:
    with httpx.Client(base_url=live_server.base_url) as http:
        r = http.get("/mistralai/v1/models", headers={"x-api-token": token})
        assert r.status_code == 200
        assert set(r.json()) == {"data"}
        up = http.post("/mistralai/v1/files", headers={"x-api-token": token}, files={"file": ("a.jsonl", JSONL)})
        assert up.status_code == 200
        file_id = up.json()["data"]["id"]
        r = http.get("/mistralai/v1/files/file_id/content", params={"file_id": file_id},
                     headers={"x-api-token": token})
        assert r.content == JSONL
        # The native credentials are not LowCodeAPI credentials.
        r = http.get("/mistralai/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert error_of(r, 401)["code"] == "MISSING_TOKEN"


def test_errors_keep_the_status_and_envelope(lc: LowCode) -> None:
    assert error_of(lc.request("GET", f"/v1/files/{uuid.uuid4()}"), 404)["code"] == "FILE_NOT_FOUND"
    assert error_of(lc.request("GET", "/v1/nope"), 404)["code"] == "ROUTE_NOT_FOUND"
    invalid = error_of(lc.request("POST", "/v1/chat/completions", json={"model": "mistral-small-latest",
                                                                         "messages": []}), 422)
    assert invalid["code"] == "VALIDATION_ERROR" and invalid["detail"][0]["loc"][:2] == ["body", "messages"]
    conflict = lc.request("GET", f"/v1/files/{uuid.uuid4()}", {"file_id": str(uuid.uuid4())})
    assert error_of(conflict, 400)["code"] == "CONFLICTING_PATH_PARAMETER"
