"""Client methods driven by the registry: coverage of all operations (the seed's 55 and the extras), argument
handling, bodies, uploads, downloads and SSE, against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.client import (
    AsyncClient,
    Client,
    NotFoundError,
    ProgressBar,
    RetryPolicy,
    StreamError,
    ValidationError,
)
from mistral_gateway.client.base import ClientBase
from mistral_gateway.client.responses import SSEDecoder, filename_from
from mistral_gateway.protocol.chat import ChatCompletionRequest, ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.files import UploadFileOut
from mistral_gateway.protocol.models import BaseModelCard, FTModelCard
from mistral_gateway.registry import Registry
from mistral_gateway.registry.spec import load_spec

FILE = {"id": "f1", "object": "file", "bytes": 3, "created_at": 1, "filename": "a.jsonl", "purpose": "fine-tune",
        "sample_type": "instruct", "source": "upload"}
CHAT = {"id": "c1", "object": "chat.completion", "model": "m", "created": 1,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
MESSAGES = [{"role": "user", "content": "hello"}]


def chunk(text: str, finish: str | None = None) -> str:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    return "data: " + json.dumps(body) + "\n\n"


class Recorder:
    """A MockTransport handler answering with ``respond(request)`` and keeping every request (body read)."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        self.requests.append(request)
        return self.respond(request)

    def json(self, i: int = -1) -> Any:
        return json.loads(self.bodies[i])


def make(tmp_path: Path, respond: Callable[[httpx.Request], httpx.Response]) -> tuple[Client, Recorder]:
    recorder = Recorder(respond)
    client = Client("http://gw.test", "tok", transport=httpx.MockTransport(recorder),
                    cache_path=tmp_path / "formats.json", retry=RetryPolicy(max_retries=0))
    return client, recorder


def ok(data: Any, **kw: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json={"data": data}, **kw)


def test_every_registry_operation_has_a_client_method(tmp_path: Path) -> None:
    registry = Registry.load()
    client, _ = make(tmp_path, ok({}))
    methods = client.methods()
    assert set(methods.values()) == {op.id for op in registry}
    assert len(registry.seed) == 55 and len(registry) > 55
    for qualname, op_id in methods.items():
        namespace, name = qualname.split(".")
        method = getattr(getattr(client, namespace), name)
        assert method.operation.id == op_id
        assert method.__doc__.startswith(registry.get(op_id).name + ":")
    streaming = {op.id for op in registry if op.stream != "never"}
    assert {methods[q] for q in methods if q.endswith(("stream", "_stream"))} == streaming
    namespaces = set(registry.namespaces)  # every client namespace has an annotation on the clients
    assert namespaces == {q.split(".")[0] for q in methods} == set(ClientBase.__annotations__) & namespaces
    assert len(namespaces) == 14
    assert {"chat.complete", "chat.stream", "fim.complete", "embeddings.create", "files.upload", "files.download",
            "files.get_signed_url", "files.retrieve", "files.delete", "files.list", "models.list"} <= set(methods)
    assert client.operation("download_file") is client.files.download


def test_signatures_list_path_query_and_body_parameters(tmp_path: Path) -> None:
    client, _ = make(tmp_path, ok({}))
    signature = inspect.signature(client.files.get_signed_url)
    assert list(signature.parameters) == ["file_id", "expiry"]
    assert "messages" in inspect.signature(client.chat.complete).parameters
    assert "stream" not in inspect.signature(client.chat.complete).parameters
    assert list(inspect.signature(client.files.download).parameters) == ["file_id", "to", "progress"]


def test_json_body_is_validated_by_the_request_model_and_sent_without_unset_defaults(tmp_path: Path) -> None:
    client, rec = make(tmp_path, ok(CHAT))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    reply = client.chat.complete(model="m", messages=MESSAGES, temperature=0.2,
                                 response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    assert isinstance(reply, ChatCompletionResponse) and reply.choices[0].message.content == "hi"
    request = rec.requests[0]
    assert (request.method, request.url.path, request.url.params["api_token"]) == (
        "POST", "/mistralai/v1/chat/completions", "tok")
    assert rec.json() == {"model": "m", "messages": MESSAGES, "temperature": 0.2, "stream": False,
                          "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    client.fim.complete(model="m", prompt="def", prompt_cache_key="k")  # a spec field the model lacks passes
    assert rec.json()["prompt_cache_key"] == "k"


def test_a_request_model_instance_and_keyword_overrides(tmp_path: Path) -> None:
    client, rec = make(tmp_path, ok(CHAT))
    request = ChatCompletionRequest(model="m", messages=MESSAGES, max_tokens=3)
    client.chat.complete(request, max_tokens=7)
    assert rec.json() == {"model": "m", "messages": MESSAGES, "max_tokens": 7, "stream": False}
    client.chat.complete(request=request)
    assert rec.json()["max_tokens"] == 3


def test_base_url_forms_and_environment_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Client("http://gw.test/mistralai/", "t", cache_path=tmp_path / "f").base_url == "http://gw.test"
    monkeypatch.setenv("MISTRAL_GATEWAY_BASE_URL", "http://env.test:9000/")
    monkeypatch.setenv("MISTRAL_GATEWAY_TOKEN", "at_env")
    client = Client(cache_path=tmp_path / "f")
    assert (client.base_url, client.api_token) == ("http://env.test:9000", "at_env")


def test_bad_arguments_fail_before_sending(tmp_path: Path) -> None:
    client, rec = make(tmp_path, ok(CHAT))
    with pytest.raises(ValidationError) as info:
        client.chat.complete(model="m", messages=[])
    assert info.value.status == 422 and info.value.detail[0]["loc"] == ["body", "messages"]
    with pytest.raises(TypeError, match="temprature"):
        client.chat.complete(model="m", messages=MESSAGES, temprature=1)
    with pytest.raises(TypeError, match="stream"):
        client.chat.complete(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(TypeError, match="stream"):
        client.audio.transcribe(model="m", file=b"x", stream=True)  # its twin, transcribe_stream, streams
    with pytest.raises(TypeError, match="file_id"):
        client.files.retrieve()
    with pytest.raises(TypeError, match="positional"):
        client.files.retrieve("a", "b")
    with pytest.raises(TypeError, match="unexpected"):
        client.files.delete("a", purpose="x")
    with pytest.raises(ValidationError):
        client.files.get_signed_url("f1", expiry=0)  # ge=1 in SignedUrlQuery
    assert rec.requests == []


def test_query_parameters_and_typed_responses(tmp_path: Path) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/mistralai/v1/models/ft:m:1":
            return httpx.Response(200, json={"data": {"id": "ft:m:1", "created": 1, "type": "fine-tuned", "job": "j",
                                                      "root": "m", "capabilities": {}}})
        if request.url.path.startswith("/mistralai/v1/models/"):
            return httpx.Response(200, json={"data": {"id": "m", "created": 1, "type": "base", "capabilities": {}}})
        return httpx.Response(200, json={"data": {"object": "list", "data": [FILE], "total": 1}})

    client, rec = make(tmp_path, respond)
    out = client.files.list(sample_type=["instruct", "pretrain"], page_size=5)
    assert out.data[0].id == "f1" and isinstance(out.data[0], UploadFileOut)
    params = rec.requests[0].url.params
    assert params.get_list("sample_type") == ["instruct", "pretrain"] and params["page_size"] == "5"
    assert "page" not in params  # defaults are the server's business
    assert isinstance(client.models.retrieve("m"), BaseModelCard)
    assert isinstance(client.models.retrieve(model_id="ft:m:1"), FTModelCard)  # the Annotated union is read
    assert rec.requests[-1].url.raw_path.startswith(b"/mistralai/v1/models/ft%3Am%3A1")


def test_results_are_typed_and_204_returns_none(tmp_path: Path) -> None:
    page = {"total_items": 0, "total_pages": 0, "current_page": 1, "page_size": 100, "has_more": False}

    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.method == "PUT":
            return httpx.Response(200, json={"data": {
                "id": "lib1", "name": "renamed", "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z", "owner_id": None, "owner_type": "Workspace", "total_size": 0,
                "nb_documents": 0, "chunk_size": 1000}})
        return httpx.Response(200, json={"data": {"pagination": page, "data": []}})

    client, rec = make(tmp_path, respond)
    listed = client.libraries.list_documents("lib1", page=1)
    assert (type(listed).__name__, listed.pagination.current_page, listed.data) == ("ListDocumentOut", 1, [])
    assert rec.requests[0].url.params["page"] == "1"
    assert client.libraries.delete_document("lib1", "doc1") is None
    assert client.libraries.update("lib1", name="renamed").name == "renamed"
    assert (rec.requests[-1].method, rec.requests[-1].url.path, rec.json()) == (
        "PUT", "/mistralai/v1/libraries/lib1", {"name": "renamed"})


def test_rows_without_a_response_model_return_plain_data(tmp_path: Path) -> None:
    # every row is built now: the libraries rows stand in for unbuilt ones (no response model to parse into)
    unbuilt = Registry(tuple(dataclasses.replace(op, implemented=False, response=None) if op.category == "Libraries"
                             else op for op in Registry.load()), load_spec())
    rec = Recorder(lambda request: httpx.Response(200, json={"data": {"object": "list", "data": [{"id": "a"}]}}))
    client = Client("http://gw.test", "tok", transport=httpx.MockTransport(rec), registry=unbuilt,
                    cache_path=tmp_path / "formats.json", retry=RetryPolicy(max_retries=0))
    assert client.libraries.list_documents("lib1", page=1) == {"object": "list", "data": [{"id": "a"}]}


def test_upload_streams_a_file_with_a_content_length_and_reports_progress(tmp_path: Path) -> None:
    source = tmp_path / "train.jsonl"
    content = b'{"text": "x"}\n' * 20_000  # 280 kB: several 64 KiB reads
    source.write_bytes(content)
    client, rec = make(tmp_path, ok(FILE))
    seen: list[tuple[int, int | None]] = []
    out = client.files.upload(source, purpose="batch", expiry=2, progress=lambda d, t: seen.append((d, t)))
    assert out.id == "f1"
    request, body = rec.requests[0], rec.bodies[0]
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert int(request.headers["content-length"]) == len(body)  # sized up front, not chunked
    assert b'name="file"; filename="train.jsonl"' in body and content in body
    assert b'name="purpose"\r\n\r\nbatch' in body and b'name="expiry"\r\n\r\n2' in body
    assert len(seen) >= 4 and seen[-1] == (len(content), len(content))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    client.files.upload(b"raw bytes", filename="given.txt")
    assert b'filename="given.txt"' in rec.bodies[-1] and b"raw bytes" in rec.bodies[-1]


def test_download_to_bytes_path_directory_and_file(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000
    headers = {"content-disposition": "attachment; filename=\"x.bin\"; filename*=UTF-8''caf%C3%A9.bin",
               "content-type": "application/octet-stream"}
    client, _ = make(tmp_path, lambda r: httpx.Response(200, content=payload, headers=headers))
    assert client.files.download("f1") == payload
    target = client.files.download("f1", to=tmp_path / "copy.bin")
    assert target == tmp_path / "copy.bin" and target.read_bytes() == payload
    folder = tmp_path / "out"
    folder.mkdir()
    progress: list[tuple[int, int | None]] = []
    named = client.files.download("f1", to=folder, progress=lambda d, t: progress.append((d, t)))
    assert named == folder / "café.bin" and named.read_bytes() == payload
    assert progress[-1] == (len(payload), len(payload))
    buffer = io.BytesIO()
    assert client.files.download("f1", to=buffer) == len(payload) and buffer.getvalue() == payload


def test_a_failed_download_leaves_no_partial_file(tmp_path: Path) -> None:
    client, _ = make(tmp_path, lambda r: httpx.Response(404, json={"data": {"error": {
        "message": "file 'f9' not found", "code": "FILE_NOT_FOUND"}}}))
    with pytest.raises(NotFoundError):
        client.files.download("f9", to=tmp_path / "never.bin")
    assert not (tmp_path / "never.bin").exists()


def test_filename_from_content_disposition() -> None:
    assert filename_from(httpx.Headers({"content-disposition": 'attachment; filename="../../etc/passwd"'})) == "passwd"
    assert filename_from(httpx.Headers({"content-disposition": "attachment; filename=plain.txt"})) == "plain.txt"
    assert filename_from(httpx.Headers({})) is None


def test_stream_yields_typed_chunks_until_done(tmp_path: Path) -> None:
    body = chunk("Hel") + ": keep-alive\n\n" + chunk("lo", "stop") + "data: [DONE]\n\n" + chunk("never")
    client, rec = make(tmp_path, lambda r: httpx.Response(200, text=body,
                                                          headers={"content-type": "text/event-stream"}))
    with client.chat.stream(model="m", messages=MESSAGES) as stream:
        chunks = list(stream)
    assert all(isinstance(c, CompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert rec.json()["stream"] is True and rec.requests[0].headers["accept"] == "text/event-stream"


def test_an_error_event_mid_stream_raises_stream_error(tmp_path: Path) -> None:
    error = {"data": {"error": {"message": "engine crashed", "code": "INTERNAL_ERROR"}}}
    body = chunk("partial") + "data: " + json.dumps(error) + "\n\n"
    client, _ = make(tmp_path, lambda r: httpx.Response(200, text=body))
    got: list[str] = []
    with pytest.raises(StreamError) as info:
        for c in client.chat.stream(model="m", messages=MESSAGES):
            got.append(c.choices[0].delta.content)
    assert got == ["partial"] and info.value.code == "INTERNAL_ERROR" and info.value.message == "engine crashed"


def test_sse_decoder_joins_multiline_data() -> None:
    decoder = SSEDecoder()
    assert [decoder.feed(line) for line in ["event: x", "data: a", "data:b", "id: 1", ""]] == [
        None, None, None, None, "a\nb"]
    assert decoder.feed("") is None


def test_async_stream_and_upload(tmp_path: Path) -> None:
    body = chunk("a") + chunk("b", "stop") + "data: [DONE]\n\n"

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files"):
            return httpx.Response(200, json={"data": FILE})
        return httpx.Response(200, text=body)

    source = tmp_path / "a.jsonl"
    source.write_bytes(b"{}\n")

    async def main() -> tuple[list[str], str]:
        async with AsyncClient("http://gw.test", "tok", transport=httpx.MockTransport(respond),
                               cache_path=tmp_path / "f.json") as client:
            stream = await client.chat.stream(model="m", messages=MESSAGES)
            texts = [c.choices[0].delta.content async for c in stream]
            uploaded = await client.files.upload(source)
            return texts, uploaded.id

    assert asyncio.run(main()) == (["a", "b"], "f1")


def test_progress_bar_draws_on_its_stream() -> None:
    out = io.StringIO()
    bar = ProgressBar("upload x", stream=out, width=10)
    bar(512, 1024)
    bar(1024, 1024)
    bar.close()
    text = out.getvalue()
    assert "upload x [#####.....]  50%" in text and "[##########] 100%" in text and text.endswith("\n")
    assert "1.0 KiB/1.0 KiB" in text


def test_importing_the_client_loads_no_server_modules() -> None:
    code = ("import sys, mistral_gateway.client as c; c.Client('http://x', 't', remember_format=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'sqlalchemy', 'alembic', 'uvicorn', 'pydantic_settings', 'xllamacpp', 'torch') "
            "or m.startswith(('mistral_gateway.http', 'mistral_gateway.services', 'mistral_gateway.storage', "
            "'mistral_gateway.engines', 'mistral_gateway.config', 'mistral_gateway.security'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
