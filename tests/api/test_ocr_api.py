"""POST /v1/ocr over HTTP in both dialects on the fake OCR engine (a document is UTF-8 text, pages split by form
feeds): each document form, the pages forms, options, bad inputs in each dialect's error shape, limits, file_id
isolation between workspaces, document annotations by the fake chat engine, scopes, usage, /v1/models and a batch
of /v1/ocr lines (the official SDK: tests/e2e/test_ocr_sdk.py; the real engine: tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

import dialect_support
from batch_support import wait_done
from dialect_support import data
from mistral_gateway.config import Settings, default_models
from mistral_gateway.engines.fake import FakeTextEngine
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.ocr import MAX_PAGES
from mistral_gateway.services.container import Services, build_services
from ocr_support import OCR_MODEL, data_url, with_fake_ocr
from url_server import UrlServer

DIALECTS = ("native", "lowcode")
THREE_PAGES = "first page\fsecond page\fthird page"
SCHEMA = {"type": "json_schema", "json_schema": {"name": "doc", "strict": True, "schema": {
    "type": "object", "properties": {"title": {"type": "string", "minLength": 3}, "pages": {"type": "integer"}},
    "required": ["title", "pages"], "additionalProperties": False}}}


class Env:
    def __init__(self, client: TestClient, services: Services, token: str) -> None:
        self.client, self.services, self.token = client, services, token

    def post(self, dialect: str, body: dict[str, Any], token: str | None = None,
             path: str = "/v1/ocr") -> httpx.Response:
        token = token or self.token
        if dialect == "native":
            return self.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        return self.client.post("/mistralai" + path, json=body, params={"api_token": token})

    def upload(self, content: bytes, purpose: str = "ocr", token: str | None = None) -> str:
        r = self.client.post("/v1/files", headers={"Authorization": f"Bearer {token or self.token}"},
                             files={"file": ("doc.pdf", content)}, data={"purpose": purpose})
        assert r.status_code == 200, r.text
        return r.json()["id"]  # type: ignore[no-any-return]


def _env(tmp: Path, **settings: Any) -> Iterator[Env]:
    models = with_fake_ocr([m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()])
    services = build_services(Settings(data_dir=tmp / "data", bootstrap_dev_token=False, models=models,
                                       **settings))
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield Env(client, services, token)
    services.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory.mktemp("ocr"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Tight limits: 2 KiB documents, 2 pages per request."""
    yield from _env(tmp_path_factory.mktemp("ocr-small"), ocr_max_document_bytes=2048, ocr_max_pages=2)


def error(r: httpx.Response, dialect: str, status: int) -> dict[str, Any]:
    """The error (message, code), checked to be in the dialect's shape; a native 422's ``detail`` as its message."""
    err = dialect_support.error(r, dialect, status)
    return {"message": json.dumps(err["detail"]), "code": None} if "detail" in err else err


def markdowns(out: dict[str, Any]) -> list[tuple[int, str]]:
    return [(p["index"], p["markdown"]) for p in out["pages"]]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("typed", [True, False])
def test_each_document_form(env: Env, dialect: str, typed: bool) -> None:
    url = data_url(THREE_PAGES)
    file_id = env.upload(THREE_PAGES.encode())
    forms = [{"type": "document_url", "document_url": url, "document_name": "three.pdf"},
             {"type": "image_url", "image_url": url}, {"type": "image_url", "image_url": {"url": url}},
             {"type": "file", "file_id": file_id}]
    for document in forms:
        if not typed:
            document = {k: v for k, v in document.items() if k != "type"}
        out = data(env.post(dialect, {"model": OCR_MODEL, "document": document}), dialect)
        assert markdowns(out) == [(0, "first page"), (1, "second page"), (2, "third page")], document
        assert out["model"] == OCR_MODEL
        assert out["usage_info"] == {"pages_processed": 3, "doc_size_bytes": len(THREE_PAGES.encode())}
        page = out["pages"][0]
        assert page["dimensions"] == {"dpi": 72, "height": 792, "width": 612} and page["images"] == []
        assert set(page) == {"index", "markdown", "images", "dimensions"}  # nothing asked, nothing extra


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("pages", "indexes"), [([2, 0], [2, 0]), ("0,2", [0, 2]), ("1-2", [1, 2]),
                                                 ("0, 1-2", [0, 1, 2]), ([1, 1, 1], [1]), (None, [0, 1, 2])])
def test_pages(env: Env, dialect: str, pages: Any, indexes: list[int]) -> None:
    out = data(env.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url(THREE_PAGES)},
                                  "pages": pages}), dialect)
    assert [p["index"] for p in out["pages"]] == indexes
    assert out["usage_info"]["pages_processed"] == len(indexes)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("pages", ["2-1", "a", "1-", "", ",", [-1], [100_000], list(range(MAX_PAGES + 1)),
                                   f"0-{MAX_PAGES}", [], True])
def test_malformed_pages_are_422(env: Env, dialect: str, pages: Any) -> None:
    error(env.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "pages": pages}),
          dialect, 422)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_page_the_document_lacks_is_400(env: Env, dialect: str) -> None:
    err = error(env.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url(THREE_PAGES)},
                                   "pages": [0, 3]}), dialect, 400)
    assert err["code"] == "INVALID_DOCUMENT" and "page 3" in err["message"] and "3 page" in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_images_tables_header_footer(env: Env, dialect: str) -> None:
    doc = data_url("Title\n<img> and <img>\n| a | b |\nfooter\f<img>")
    base = {"model": OCR_MODEL, "document": {"document_url": doc}}
    out = data(env.post(dialect, base), dialect)
    first = out["pages"][0]
    assert first["markdown"] == "Title\n![img-0.jpeg](img-0.jpeg) and ![img-1.jpeg](img-1.jpeg)\n| a | b |\nfooter"
    assert [i["id"] for p in out["pages"] for i in p["images"]] == ["img-0.jpeg", "img-1.jpeg", "img-2.jpeg"]
    assert first["images"][0] == {"id": "img-0.jpeg", "top_left_x": 0, "top_left_y": 0, "bottom_right_x": 10,
                                  "bottom_right_y": 10}  # no base64 unless asked
    out = data(env.post(dialect, {**base, "include_image_base64": True, "image_limit": 2}), dialect)
    assert [i["id"] for p in out["pages"] for i in p["images"]] == ["img-0.jpeg", "img-1.jpeg"]
    assert out["pages"][0]["images"][0]["image_base64"].startswith("data:image/jpeg;base64,")
    out = data(env.post(dialect, {**base, "image_min_size": 11}), dialect)
    assert all(p["images"] == [] for p in out["pages"]) and "img-" not in out["pages"][0]["markdown"]
    out = data(env.post(dialect, {**base, "table_format": "html", "extract_header": True, "extract_footer": True}),
               dialect)
    first = out["pages"][0]
    assert (first["header"], first["footer"]) == ("Title", "footer")
    assert first["tables"] == [{"id": "tbl-0.html", "content": "| a | b |", "format": "html"}]
    assert "[tbl-0.html](tbl-0.html)" in first["markdown"] and "Title" not in first["markdown"]
    assert out["pages"][1]["tables"] == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_model_names(env: Env, dialect: str) -> None:
    body = {"document": {"document_url": data_url("x")}}
    assert data(env.post(dialect, {**body, "model": None}), dialect)["model"] == OCR_MODEL  # null: the default
    for dated in ("mistral-ocr-2505", "mistral-ocr-2512", "mistral-document-ai-2505"):
        assert data(env.post(dialect, {**body, "model": dated}), dialect)["model"] == dated
    err = error(env.post(dialect, {**body, "model": "mistral-small-latest"}), dialect, 400)
    assert err["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and "'ocr'" in err["message"]
    assert error(env.post(dialect, {**body, "model": "no-such-model"}), dialect, 404)["code"] == "MODEL_NOT_FOUND"
    error(env.post(dialect, {"document": body["document"]}), dialect, 422)  # model is required (may be null)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_ocr_model_cannot_chat(env: Env, dialect: str) -> None:
    err = error(env.post(dialect, {"model": OCR_MODEL, "messages": [{"role": "user", "content": "hi"}]},
                         path="/v1/chat/completions"), dialect, 400)
    assert err["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and "'completion_chat'" in err["message"]


BAD_BODIES = [
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "surprise": 1},  # additionalProperties
    {"model": OCR_MODEL, "document": {"document_url": data_url("x"), "surprise": 1}},
    {"model": OCR_MODEL, "document": {"type": "document_url", "image_url": data_url("x")}},  # type and key disagree
    {"model": OCR_MODEL, "document": {"type": "video", "document_url": "x"}},
    {"model": OCR_MODEL, "document": {"something": "else"}},
    {"model": OCR_MODEL, "document": "https://example.com/a.pdf"},
    {"model": OCR_MODEL, "document": {"file_id": "not-a-uuid"}},
    {"model": OCR_MODEL, "document": {"document_url": ""}},
    {"model": OCR_MODEL, "document": {"image_url": {"url": data_url("x"), "detail": "extreme"}}},
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "image_limit": -1},
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "image_min_size": 10**9},
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "include_image_base64": "yes"},
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "table_format": "csv"},
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "document_annotation_prompt": "titles"},
    {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, "document_annotation_format": {
        "type": "json_schema"}},
    {"model": "", "document": {"document_url": data_url("x")}},
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_invalid_bodies_are_422(env: Env, dialect: str, body: dict[str, Any]) -> None:
    error(env.post(dialect, body), dialect, 422)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("document", "words"), [
    ({"document_url": "data:application/pdf,plain"}, "base64"),
    ({"document_url": "data:application/pdf;base64,***"}, "not valid base64"),
    ({"document_url": data_url(b"\xff\xfe\x00binary")}, "not a PDF or an image"),
    ({"image_url": data_url("   ")}, "empty"),
])
def test_unreadable_documents_are_400(env: Env, dialect: str, document: dict[str, Any], words: str) -> None:
    err = error(env.post(dialect, {"model": OCR_MODEL, "document": document}), dialect, 400)
    assert err["code"] == "INVALID_DOCUMENT" and words in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("field", "value"), [("bbox_annotation_format", SCHEMA),
                                              ("confidence_scores_granularity", "page"),
                                              ("confidence_scores_granularity", "word")])
def test_unserved_options_are_400_saying_why(env: Env, dialect: str, field: str, value: Any) -> None:
    err = error(env.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url("x")}, field: value}),
                dialect, 400)
    assert err["code"] == "UNSUPPORTED_OPTION" and field in err["message"]
    assert ("vision model" if field.startswith("bbox") else "confidence scores") in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_include_blocks_is_accepted_without_blocks(env: Env, dialect: str) -> None:
    out = data(env.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url("x")},
                                  "include_blocks": True}), dialect)  # the SDK's default
    assert markdowns(out) == [(0, "x")] and "blocks" not in out["pages"][0]


@pytest.fixture(scope="module")
def docs() -> Iterator[UrlServer]:
    """A document server on loopback (a private address: refused unless fetch_allow lets it through)."""
    routes = {"/three.pdf": (200, "application/pdf", THREE_PAGES.encode()),
              "/scan": (200, "application/octet-stream", b"a scanned page"),
              "/page.html": (200, "text/html", b"<html>not a document</html>"),
              "/big.pdf": (200, "application/pdf", b"b" * 3000)}
    with UrlServer(routes) as server:
        yield server


@pytest.fixture(scope="module")
def fetching(tmp_path_factory: pytest.TempPathFactory, docs: UrlServer) -> Iterator[Env]:
    """The loopback document server allowed by host:port; 2 KiB documents."""
    yield from _env(tmp_path_factory.mktemp("ocr-fetch"), fetch_allow=[f"127.0.0.1:{docs.port}"],
                    ocr_max_document_bytes=2048)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_document_urls_are_fetched_when_allowed(fetching: Env, docs: UrlServer, dialect: str) -> None:
    out = data(fetching.post(dialect, {"model": OCR_MODEL, "document": {"document_url": docs.url("/three.pdf")},
                                       "pages": [2]}), dialect)
    assert markdowns(out) == [(2, "third page")]
    out = data(fetching.post(dialect, {"model": OCR_MODEL, "document": {"image_url": {"url": docs.url("/scan")}}}),
               dialect)
    assert markdowns(out) == [(0, "a scanned page")]  # octet-stream is taken: the engine knows the bytes


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("path", "words"), [("/page.html", "text/html"), ("/big.pdf", "2048"),
                                             ("/missing.pdf", "HTTP 404"), ("/to/http://10.0.0.1/x.pdf", "private")])
def test_refused_document_urls_say_why(fetching: Env, docs: UrlServer, dialect: str, path: str, words: str) -> None:
    err = error(fetching.post(dialect, {"model": OCR_MODEL, "document": {"document_url": docs.url(path)}}),
                dialect, 400)
    assert err["code"] == "DOCUMENT_URL_REFUSED" and words in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/three.pdf", "http://[::1]:{port}/three.pdf",
                                 "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/a.pdf",
                                 "file:///etc/passwd", "ftp://example.com/a.pdf", "gopher://127.0.0.1/"])
def test_private_and_non_http_urls_are_refused_by_default(env: Env, docs: UrlServer, dialect: str, url: str) -> None:
    body = {"model": OCR_MODEL, "document": {"document_url": url.format(port=docs.port)}}
    before = len(docs.seen)
    err = error(env.post(dialect, body), dialect, 400)
    assert err["code"] == "DOCUMENT_URL_REFUSED" and ("private" in err["message"] or "http" in err["message"])
    assert len(docs.seen) == before  # refused before any connection


@pytest.mark.parametrize("dialect", DIALECTS)
def test_document_size_limit(small: Env, dialect: str) -> None:
    err = error(small.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url("y" * 3000)}}),
                dialect, 413)
    assert err["code"] == "DOCUMENT_TOO_LARGE" and "2048 bytes" in err["message"]
    file_id = small.upload(b"z" * 3000)
    err = error(small.post(dialect, {"model": OCR_MODEL, "document": {"file_id": file_id}}), dialect, 413)
    assert err["code"] == "DOCUMENT_TOO_LARGE" and "3000 bytes" in err["message"] and "2048" in err["message"]
    for size in (2047, 2048):  # base64 padded with "=" and "==": the size is checked exactly, before decoding
        out = data(small.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url("y" * size)}}),
                   dialect)
        assert out["usage_info"]["doc_size_bytes"] == size
    err = error(small.post(dialect, {"model": OCR_MODEL, "document": {"document_url": data_url("y" * 2049)}}),
                dialect, 413)
    assert "2049 bytes" in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_page_count_limit(small: Env, dialect: str) -> None:
    body = {"model": OCR_MODEL, "document": {"document_url": data_url(THREE_PAGES)}}
    err = error(small.post(dialect, body), dialect, 400)
    assert err["code"] == "INVALID_DOCUMENT" and "at most 2" in err["message"]
    assert [p["index"] for p in data(small.post(dialect, {**body, "pages": "1-2"}), dialect)["pages"]] == [1, 2]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_files_of_another_workspace_are_404(env: Env, dialect: str) -> None:
    other, _ = env.services.tokens.create("other", workspace="elsewhere")
    theirs = env.upload(b"their secret page", token=other)
    err = error(env.post(dialect, {"model": OCR_MODEL, "document": {"file_id": theirs}}), dialect, 404)
    assert err["code"] == "FILE_NOT_FOUND" and "secret" not in err["message"]
    out = data(env.post(dialect, {"model": OCR_MODEL, "document": {"file_id": theirs}}, token=other), dialect)
    assert markdowns(out) == [(0, "their secret page")]
    missing = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert error(env.post(dialect, {"model": OCR_MODEL, "document": {"file_id": missing}}), dialect, 404)["code"] \
        == "FILE_NOT_FOUND"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_file_of_another_purpose_is_400(env: Env, dialect: str) -> None:
    file_id = env.upload(b"page", purpose="batch")
    err = error(env.post(dialect, {"model": OCR_MODEL, "document": {"file_id": file_id}}), dialect, 400)
    assert err["code"] == "INVALID_FILE_PURPOSE" and "'ocr'" in err["message"]


def annotation_engine(env: Env) -> FakeTextEngine:
    entry = env.services.models.catalog.resolve(env.services.settings.ocr_annotation_model)
    assert entry is not None
    return env.services.engines._engines[entry.id]  # type: ignore[no-any-return]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_document_annotation(env: Env, dialect: str) -> None:
    body = {"model": OCR_MODEL, "document": {"document_url": data_url("Invoice 42\fTotal: 7 EUR")},
            "document_annotation_format": SCHEMA, "document_annotation_prompt": "Name the invoice."}
    out = data(env.post(dialect, body), dialect)
    assert json.loads(out["document_annotation"]) == {"title": "xxx", "pages": 0}  # the fake's schema instance
    prompt = annotation_engine(env).prompts[-1]
    assert "Invoice 42\n\nTotal: 7 EUR" in prompt and "Name the invoice." in prompt  # the markdown, the prompt
    assert "document_annotation" not in data(env.post(dialect, {k: v for k, v in body.items() if "annotation" not in
                                                                k}), dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_only_json_schema_annotations(env: Env, dialect: str) -> None:
    body = {"model": OCR_MODEL, "document": {"document_url": data_url("x")},
            "document_annotation_format": {"type": "json_object"}}
    err = error(env.post(dialect, body), dialect, 400)
    assert err["code"] == "INVALID_ANNOTATION_FORMAT" and "json_schema" in err["message"]


def test_annotation_model_misconfigured_is_400_naming_the_setting(tmp_path: Path) -> None:
    for env in _env(tmp_path, ocr_annotation_model="mistral-embed"):
        err = error(env.post("native", {"model": OCR_MODEL, "document": {"document_url": data_url("x")},
                                        "document_annotation_format": SCHEMA}), "native", 400)
        assert err["code"] == "ANNOTATION_UNAVAILABLE" and "ocr_annotation_model" in err["message"]


def test_scopes(env: Env) -> None:
    chat_only, _ = env.services.tokens.create("chat", scopes=["chat"])
    ocr_only, _ = env.services.tokens.create("ocr", scopes=["ocr"])
    body = {"model": OCR_MODEL, "document": {"document_url": data_url("x")}}
    for dialect in DIALECTS:
        assert env.post(dialect, body, chat_only).status_code == 403
        assert env.post(dialect, body, ocr_only).status_code == 200


def test_usage_records_the_annotation_tokens(tmp_path: Path) -> None:
    for env in _env(tmp_path):
        body = {"model": "mistral-ocr-2505", "document": {"document_url": data_url("one two")}}
        assert env.post("native", body).status_code == 200
        assert env.post("native", {**body, "document_annotation_format": SCHEMA}).status_code == 200
        env.services.usage.flush()
        records, _ = env.services.usage.list()
        rows = sorted((r.operation, r.model, r.prompt_tokens > 0, r.completion_tokens > 0) for r in records)
        assert rows == [("ocr", "mistral-ocr-2505", False, False), ("ocr", "mistral-ocr-2505", True, True)]


def test_models_list_the_ocr_capability(env: Env) -> None:
    for dialect in DIALECTS:
        r = env.client.get("/v1/models/mistral-ocr-2512", headers={"Authorization": f"Bearer {env.token}"}) \
            if dialect == "native" else env.client.get("/mistralai/v1/models/mistral-ocr-2512",
                                                       params={"api_token": env.token})
        card = data(r, dialect)
        assert card["capabilities"]["ocr"] is True and card["capabilities"]["completion_chat"] is False


def test_a_batch_of_ocr_lines(env: Env) -> None:
    file_id = env.upload(THREE_PAGES.encode())
    requests = [{"custom_id": "url", "body": {"document": {"document_url": data_url(THREE_PAGES)}, "pages": [1]}},
                {"custom_id": "file", "body": {"document": {"type": "file", "file_id": file_id},
                                               "document_annotation_format": SCHEMA}},
                {"custom_id": "bad", "body": {"document": {"document_url": data_url(THREE_PAGES)}, "pages": [9]}},
                {"custom_id": "invalid", "body": {"document": {"nothing": 1}}}]
    headers = {"Authorization": f"Bearer {env.token}"}
    r = env.client.post("/v1/batch/jobs", headers=headers, json={"endpoint": "/v1/ocr", "model": OCR_MODEL,
                                                                 "requests": requests})
    assert r.status_code == 200, r.text
    job = wait_done(lambda i: env.client.get(f"/v1/batch/jobs/{i}", headers=headers,
                                             params={"inline": "true"}).json(), r.json()["id"])
    assert job["status"] == "SUCCESS" and job["succeeded_requests"] == 2 and job["failed_requests"] == 2, job
    by_id = {o["custom_id"]: o for o in job["outputs"]}
    assert markdowns(by_id["url"]["response"]["body"]) == [(1, "second page")]
    annotated = by_id["file"]["response"]["body"]
    assert len(annotated["pages"]) == 3 and json.loads(annotated["document_annotation"])["title"] == "xxx"
    assert by_id["bad"]["response"]["status_code"] == 400
    assert by_id["invalid"]["response"]["status_code"] == 422


def test_a_batch_for_a_model_that_cannot_ocr_is_refused(env: Env) -> None:
    r = env.client.post("/v1/batch/jobs", headers={"Authorization": f"Bearer {env.token}"}, json={
        "endpoint": "/v1/ocr", "model": "mistral-small-latest",
        "requests": [{"body": {"document": {"document_url": data_url("x")}}}]})
    assert r.status_code == 400 and r.json()["param"] == "model" and "'ocr'" in r.json()["message"]
