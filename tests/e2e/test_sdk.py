"""The official Mistral SDK (mistralai 3.7.0) against a real server on loopback: Files and Models end to end.

If the SDK rejects a response, the server's shape is wrong: these tests are the compatibility contract.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError

pytestmark = pytest.mark.e2e

JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 3
PRETRAIN = b'{"text": "once upon a time"}\n{"text": "the end"}\n'
BATCH = b'{"custom_id": "0", "body": {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}\n'
BINARY = bytes(range(256)) * 64  # every byte value, 16 KiB


@pytest.fixture
def sdk(live_server: Any, token: str) -> Iterator[Mistral]:
    with Mistral(api_key=token, server_url=live_server.base_url, timeout_ms=20_000) as client:
        yield client


def upload(sdk: Mistral, name: str, content: bytes, purpose: str | None = None) -> Any:
    kwargs = {"purpose": purpose} if purpose else {}
    return sdk.files.upload(file={"file_name": name, "content": content}, **kwargs)


def status_of(exc: pytest.ExceptionInfo[MistralError]) -> int:
    return exc.value.status_code


def test_upload_fine_tune_jsonl(sdk: Mistral) -> None:
    out = upload(sdk, "train.jsonl", JSONL, "fine-tune")
    assert uuid.UUID(out.id)
    assert out.object == "file"
    assert (out.filename, out.size_bytes, out.purpose, out.num_lines) == ("train.jsonl", len(JSONL), "fine-tune", 3)
    assert (out.sample_type, out.source, out.mimetype) == ("instruct", "upload", "application/jsonl")
    assert out.created_at > 1_700_000_000


def test_upload_without_purpose_defaults_to_fine_tune_and_detects_pretrain(sdk: Mistral) -> None:
    out = upload(sdk, "corpus.jsonl", PRETRAIN)
    assert (out.purpose, out.sample_type, out.num_lines) == ("fine-tune", "pretrain", 2)


@pytest.mark.parametrize(("purpose", "name", "content", "sample_type", "mimetype"), [
    ("batch", "requests.jsonl", BATCH, "batch_request", "application/jsonl"),
    ("ocr", "scan.pdf", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "instruct", "application/pdf"),
])
def test_upload_batch_and_ocr(sdk: Mistral, purpose: str, name: str, content: bytes, sample_type: str,
                              mimetype: str) -> None:
    out = upload(sdk, name, content, purpose)
    assert (out.purpose, out.filename, out.size_bytes) == (purpose, name, len(content))
    assert (out.sample_type, out.mimetype) == (sample_type, mimetype)
    assert sdk.files.retrieve(file_id=out.id).purpose == purpose


def test_upload_with_expiry_and_visibility(sdk: Mistral) -> None:
    out = sdk.files.upload(file={"file_name": "train.jsonl", "content": JSONL}, expiry=2, visibility="user")
    assert out.expires_at == out.created_at + 2 * 3600
    assert out.visibility == "user"
    assert sdk.files.retrieve(file_id=out.id).expires_at == out.expires_at


def test_list_with_filters_and_pagination(sdk: Mistral) -> None:
    ft = upload(sdk, "train.jsonl", JSONL, "fine-tune")
    batch = upload(sdk, "requests.jsonl", BATCH, "batch")
    ocr = upload(sdk, "scan.pdf", b"%PDF-1.4\n%%EOF\n", "ocr")
    everything = sdk.files.list()
    assert everything.object == "list"
    assert everything.total == 3
    assert {f.id for f in everything.data} == {ft.id, batch.id, ocr.id}

    assert [f.id for f in sdk.files.list(purpose="batch").data] == [batch.id]
    assert [f.id for f in sdk.files.list(search="scan").data] == [ocr.id]
    assert [f.id for f in sdk.files.list(search=ft.id).data] == [ft.id]
    assert [f.id for f in sdk.files.list(sample_type=["batch_request"]).data] == [batch.id]
    assert {f.id for f in sdk.files.list(sample_type=["instruct", "batch_request"]).data} == {ft.id, batch.id, ocr.id}
    assert [f.id for f in sdk.files.list(mimetypes=["application/pdf"]).data] == [ocr.id]
    assert sdk.files.list(source=["mistral"]).data == []
    assert sdk.files.list(source=["upload"]).total == 3

    first = sdk.files.list(page=0, page_size=2)
    second = sdk.files.list(page=1, page_size=2)
    assert (len(first.data), len(second.data)) == (2, 1)
    assert first.total == second.total == 3
    assert {f.id for f in first.data} | {f.id for f in second.data} == {ft.id, batch.id, ocr.id}
    assert sdk.files.list(page=5, page_size=2).data == []
    assert sdk.files.list(include_total=False).total is None


def test_retrieve(sdk: Mistral) -> None:
    out = upload(sdk, "train.jsonl", JSONL)
    got = sdk.files.retrieve(file_id=out.id)
    assert got.deleted is False
    assert (got.id, got.filename, got.size_bytes, got.created_at) == (out.id, out.filename, out.size_bytes,
                                                                       out.created_at)


def test_download_returns_the_same_bytes(sdk: Mistral) -> None:
    out = upload(sdk, "blob.bin", BINARY, "ocr")
    response = sdk.files.download(file_id=out.id)
    try:
        assert response.read() == BINARY
        assert response.headers["content-type"] == "application/octet-stream"
        assert 'filename="blob.bin"' in response.headers["content-disposition"]
    finally:
        response.close()


def test_signed_url_works_without_a_token(sdk: Mistral) -> None:
    out = upload(sdk, "blob.bin", BINARY, "ocr")
    signed = sdk.files.get_signed_url(file_id=out.id, expiry=1)
    r = httpx.get(signed.url)  # no token
    assert r.status_code == 200
    assert r.content == BINARY
    assert r.headers["content-type"] == "application/octet-stream"
    assert sdk.files.get_signed_url(file_id=out.id).url  # the SDK's default expiry (24 h) is accepted


def test_delete_then_retrieve_is_404(sdk: Mistral) -> None:
    out = upload(sdk, "train.jsonl", JSONL)
    deleted = sdk.files.delete(file_id=out.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (out.id, "file", True)
    with pytest.raises(MistralError) as exc:
        sdk.files.retrieve(file_id=out.id)
    assert status_of(exc) == 404
    with pytest.raises(MistralError) as exc:
        sdk.files.delete(file_id=out.id)
    assert status_of(exc) == 404
    with pytest.raises(MistralError) as exc:
        sdk.files.download(file_id=out.id)
    assert status_of(exc) == 404
    assert sdk.files.list().data == []


def test_models_list_has_the_aliases(sdk: Mistral) -> None:
    models = sdk.models.list()
    ids = {m.id for m in models.data}
    assert {"mistral-small-latest", "codestral-latest", "mistral-embed", "qwen2.5-coder-1.5b-instruct"} <= ids
    assert all(m.type == "base" for m in models.data)
    assert [m.id for m in sdk.models.list(model="mistral-embed").data] == ["mistral-embed"]


def test_retrieve_model_by_alias(sdk: Mistral) -> None:
    card = sdk.models.retrieve(model_id="mistral-small-latest")
    assert card.id == "mistral-small-latest"
    assert card.type == "base"
    assert "qwen2.5-coder-1.5b-instruct" in card.aliases
    assert card.capabilities.completion_chat is True
    embed = sdk.models.retrieve(model_id="mistral-embed")
    assert embed.capabilities.completion_chat is False
    with pytest.raises(MistralError) as exc:
        sdk.models.retrieve(model_id="no-such-model")
    assert status_of(exc) == 404


def test_delete_base_model_is_403(sdk: Mistral) -> None:
    with pytest.raises(MistralError) as exc:
        sdk.models.delete(model_id="mistral-small-latest")
    assert status_of(exc) == 403
    assert "BASE_MODEL_NOT_DELETABLE" in exc.value.body
    assert sdk.models.retrieve(model_id="mistral-small-latest").id == "mistral-small-latest"  # still there


def test_wrong_key_is_401(live_server: Any) -> None:
    with Mistral(api_key="at_" + "x" * 43, server_url=live_server.base_url) as bad, \
            pytest.raises(MistralError) as exc:
        bad.models.list()
    assert status_of(exc) == 401


def test_async_client(live_server: Any, token: str) -> None:
    async def run() -> tuple[Any, Any]:
        async with Mistral(api_key=token, server_url=live_server.base_url) as client:
            out = await client.files.upload_async(file={"file_name": "a.jsonl", "content": JSONL})
            return out, await client.files.list_async()

    out, listing = asyncio.run(run())
    assert [f.id for f in listing.data] == [out.id]
