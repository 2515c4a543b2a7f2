"""Responses of every implemented operation validate against Mistral's published schemas (JSON Schema 2020-12).

Native bodies are checked against the operation's 200 schema in the committed spec subset; LowCodeAPI bodies
against the generated ``openapi/lowcode.json`` (the ``{"data": ...}`` envelope) and, unwrapped, against the spec.
Also: the served OpenAPI and definition documents equal the committed files, and ``/health`` needs no token.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from audio_support import SPEECH_MODEL, tone_wav, with_fake_speech
from batch_support import hold, wait_done
from classifier_support import MODERATION_MODEL, with_fake_moderation
from contract_libraries import library_producers
from fine_tuning_support import CORPUS, fake_merge
from mistral_gateway.config import Settings, default_models
from mistral_gateway.engines.fake import FakeClassifierTrainer, FakeTrainer
from mistral_gateway.registry import Registry
from mistral_gateway.services.container import Services
from mistral_gateway.storage.records import FineTunedModelRecord
from ocr_support import OCR_MODEL, data_url, with_fake_ocr
from training_support import tiny_tokenizer

REGISTRY = Registry.load()
SPEC = REGISTRY.spec
SCHEMAS = SPEC.schemas
OPENAPI_DIR = Path(__file__).resolve().parents[2] / "openapi"
LOWCODE_DOC = json.loads((OPENAPI_DIR / "lowcode.json").read_text())
NATIVE_DOC = json.loads((OPENAPI_DIR / "native.json").read_text())
DIALECTS = ("native", "lowcode")
JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


def validator(schema: dict[str, Any], components: dict[str, Any]) -> Draft202012Validator:
    """``schema`` with its ``#/components/schemas/...`` references resolvable: the components travel in the same
    document, so JSON-pointer references resolve against its root."""
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": {"schemas": components},
                "allOf": [schema]}
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(schema: dict[str, Any], components: dict[str, Any], instance: Any) -> None:
    errors = sorted(validator(schema, components).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def spec_schema(op_id: str, status: str = "200", media: str = "application/json") -> dict[str, Any]:
    return SPEC.operation(REGISTRY.get(op_id).operation_id)["responses"][status]["content"][media]["schema"]


def lowcode_schema(op_id: str, status: str = "200") -> dict[str, Any]:
    op = REGISTRY.get(op_id)
    doc_op = LOWCODE_DOC["paths"][op.lowcode_path][op.method.lower()]
    return doc_op["responses"][status]["content"]["application/json"]["schema"]


@dataclass
class Api:
    client: TestClient
    services: Services
    token: str
    workspace_id: str

    def call(self, op_id: str, dialect: str, values: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        op = REGISTRY.get(op_id)
        path = (op.path if dialect == "native" else op.lowcode_path).format(**(values or {}))
        if dialect == "native":
            kwargs["headers"] = {"Authorization": f"Bearer {self.token}"}
        else:
            kwargs["params"] = {**kwargs.get("params", {}), "api_token": self.token}
        return self.client.request(op.method, path, **kwargs)

    def upload(self, dialect: str, filename: str = "train.jsonl", content: bytes = JSONL,
               purpose: str = "fine-tune") -> httpx.Response:
        return self.call("upload_file", dialect, files={"file": (filename, content)}, data={"purpose": purpose})

    def file_id(self) -> str:
        r = self.upload("native")
        assert r.status_code == 200, r.text
        return r.json()["id"]

    def fine_tuned_model(self) -> str:
        model_id = f"ft:mistral-small-latest:{secrets.token_hex(4)}:20250101:{secrets.token_hex(4)}"
        self.services.fine_tuned.add(FineTunedModelRecord(
            id=model_id, workspace_id=self.workspace_id, root="mistral-small-latest", job_id=str(uuid.uuid4()),
            name="contract ft", description="a fine-tuned model", archived=False,
            capabilities=("completion_chat", "fine_tuning"), max_context_length=32768, created_at=int(time.time())))
        return model_id


@pytest.fixture
def settings(tmp_path: Path, weights_dir: Path) -> Settings:
    """The default catalog (same ids and aliases) served by the deterministic fake engines. Their assets resolve in
    the shared weights dir: a data dir of its own would get a 1.1 GB copy of the chat model per test."""
    models = with_fake_ocr(with_fake_moderation([m.model_copy(update={"engine": "fake"}) for m in default_models()]))
    return Settings(data_dir=tmp_path / "data", weights_path=weights_dir, bootstrap_dev_token=False,
                    models=with_fake_speech(models))


@pytest.fixture
def api(client: TestClient, services: Services) -> Api:
    token, record = services.tokens.create("contract", scopes=["*"])
    return Api(client, services, token, record.workspace_id)


def check(op_id: str, dialect: str, r: httpx.Response, status: int | None = None) -> Any:
    """Status, content type and schema of a JSON success in ``dialect``; returns the (unwrapped) body."""
    op = REGISTRY.get(op_id)
    assert r.status_code == (status or op.status), r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    if dialect == "lowcode":
        assert set(body) == {"data"}
        assert_valid(lowcode_schema(op_id, str(r.status_code)), LOWCODE_DOC["components"]["schemas"], body)
        body = body["data"]
    assert_valid(spec_schema(op_id, str(r.status_code)), SCHEMAS, body)
    return body


# -- one producer per implemented operation: each makes real resources, calls the operation, checks the result ---

def _upload_file(api: Api, dialect: str) -> None:
    for filename, content, purpose in [("train.jsonl", JSONL, "fine-tune"), ("requests.jsonl", JSONL, "batch"),
                                       ("scan.pdf", b"%PDF-1.4\n%%EOF\n", "ocr")]:
        body = check("upload_file", dialect, api.upload(dialect, filename, content, purpose))
        assert (body["filename"], body["bytes"], body["purpose"]) == (filename, len(content), purpose)


def _list_files(api: Api, dialect: str) -> None:
    ids = {api.file_id() for _ in range(3)}
    body = check("list_files", dialect, api.call("list_files", dialect))
    assert {f["id"] for f in body["data"]} == ids
    assert body["total"] == 3
    page = check("list_files", dialect, api.call("list_files", dialect, params={"page": 1, "page_size": 2,
                                                                                  "include_total": "false"}))
    assert len(page["data"]) == 1


def _retrieve_file(api: Api, dialect: str) -> None:
    file_id = api.file_id()
    body = check("retrieve_file", dialect, api.call("retrieve_file", dialect, {"file_id": file_id}))
    assert body["id"] == file_id and body["deleted"] is False


def _delete_file(api: Api, dialect: str) -> None:
    file_id = api.file_id()
    body = check("delete_file", dialect, api.call("delete_file", dialect, {"file_id": file_id}))
    assert body == {"id": file_id, "object": "file", "deleted": True}


def _download_file(api: Api, dialect: str) -> None:
    file_id = api.file_id()
    r = api.call("download_file", dialect, {"file_id": file_id})
    assert r.status_code == 200
    assert "application/octet-stream" in SPEC.operation(REGISTRY.get("download_file").operation_id)[
        "responses"]["200"]["content"]
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == JSONL


def _get_signed_url(api: Api, dialect: str) -> None:
    file_id = api.file_id()
    body = check("get_signed_url", dialect, api.call("get_signed_url", dialect, {"file_id": file_id},
                                                     params={"expiry": 2}))
    assert api.client.get(body["url"]).content == JSONL


def _list_models(api: Api, dialect: str) -> None:
    ft = api.fine_tuned_model()
    body = check("list_available_models", dialect, api.call("list_available_models", dialect))
    types = {card["id"]: card["type"] for card in body["data"]}
    assert types[ft] == "fine-tuned"
    assert types["mistral-small-latest"] == types["mistral-embed"] == "base"


def _retrieve_model(api: Api, dialect: str) -> None:
    for model_id in ("mistral-small-latest", "qwen2.5-coder-1.5b-instruct", api.fine_tuned_model()):
        body = check("retrieve_model", dialect, api.call("retrieve_model", dialect, {"model_id": model_id}))
        assert body["id"] == model_id


def _delete_model(api: Api, dialect: str) -> None:
    ft = api.fine_tuned_model()
    body = check("delete_model", dialect, api.call("delete_model", dialect, {"model_id": ft}))
    assert body["id"] == ft and body["deleted"] is True


def _update_fine_tuned_model(api: Api, dialect: str) -> None:
    ft = api.fine_tuned_model()
    body = check("update_fine_tuned_model", dialect, api.call("update_fine_tuned_model", dialect, {"model_id": ft},
                                                              json={"name": "renamed", "description": None}))
    assert (body["id"], body["name"], body["description"], body["model_type"]) == (ft, "renamed", None, "completion")


def _archive_fine_tuned_model(api: Api, dialect: str) -> None:
    ft = api.fine_tuned_model()
    body = check("archive_fine_tuned_model", dialect, api.call("archive_fine_tuned_model", dialect, {"model_id": ft}))
    assert body == {"id": ft, "object": "model", "archived": True}


def _unarchive_fine_tuned_model(api: Api, dialect: str) -> None:
    ft = api.fine_tuned_model()
    body = check("unarchive_fine_tuned_model", dialect, api.call("unarchive_fine_tuned_model", dialect,
                                                                 {"model_id": ft}))
    assert body == {"id": ft, "object": "model", "archived": False}


def _chat_completions(api: Api, dialect: str) -> None:
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    out = check("create_chat_completions", dialect, api.call("create_chat_completions", dialect, json=body))
    assert out["choices"][0]["message"]["role"] == "assistant"
    _check_stream(api.call("create_chat_completions", dialect, json={**body, "stream": True}))
    for effort in ("high", "none"):  # a reasoning model's thinking chunks, streamed and not
        reasoning = {**body, "model": "magistral-medium-latest", "max_tokens": 8, "reasoning_effort": effort}
        out = check("create_chat_completions", dialect, api.call("create_chat_completions", dialect, json=reasoning))
        content = out["choices"][0]["message"]["content"]
        assert [c["type"] for c in content] == ["thinking", "text"] if effort == "high" else isinstance(content, str)
        _check_stream(api.call("create_chat_completions", dialect, json={**reasoning, "stream": True}))


def _fim_completions(api: Api, dialect: str) -> None:
    body = {"model": "codestral-latest", "prompt": "def f(", "suffix": "return 1", "max_tokens": 4}
    out = check("create_fim_completions", dialect, api.call("create_fim_completions", dialect, json=body))
    assert out["choices"][0]["message"]["content"]
    _check_stream(api.call("create_fim_completions", dialect, json={**body, "stream": True}))


def _check_stream(r: httpx.Response) -> None:
    """Every SSE chunk validates against the spec's CompletionChunk; the stream ends with [DONE]."""
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]" and len(data) >= 3
    for chunk in data[:-1]:
        assert_valid({"$ref": "#/components/schemas/CompletionChunk"}, SCHEMAS, json.loads(chunk))


def _embeddings(api: Api, dialect: str) -> None:
    # base64 (a string per vector, as OpenAI) is outside the spec's schema: tests/integration/test_embeddings.py
    for extra in ({}, {"output_dtype": "int8"}, {"output_dtype": "ubinary"}):
        body = {"model": "mistral-embed", "input": ["Embed this sentence.", "As well as this one."], **extra}
        out = check("create_embeddings", dialect, api.call("create_embeddings", dialect, json=body))
        assert [d["index"] for d in out["data"]] == [0, 1] and len(out["id"]) == 32
        assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] > 0


CONVERSATION = [{"role": "user", "content": "how do I treat a burn?"}, {"role": "assistant", "content": "Cool it."}]


def _moderations(api: Api, dialect: str) -> None:
    for text in ("hello", ["violence and threats", "nothing at all"]):
        out = check("moderations", dialect, api.call("moderations", dialect, json={"model": MODERATION_MODEL,
                                                                                     "input": text}))
        assert len(out["results"]) == (1 if isinstance(text, str) else 2) and len(out["id"]) == 32


def _chat_moderations(api: Api, dialect: str) -> None:
    for conversations in (CONVERSATION, [CONVERSATION, CONVERSATION[:1]]):
        body = {"model": MODERATION_MODEL, "input": conversations}
        out = check("chat_moderations", dialect, api.call("chat_moderations", dialect, json=body))
        assert len(out["results"]) == (2 if isinstance(conversations[0], list) else 1)


def _classifications(api: Api, dialect: str) -> None:
    body = {"model": MODERATION_MODEL, "input": ["pii", "law"]}
    out = check("classifications", dialect, api.call("classifications", dialect, json=body))
    assert [set(r) for r in out["results"]] == [{"moderation"}] * 2


def _chat_classifications(api: Api, dialect: str) -> None:
    for value in ({"messages": CONVERSATION}, [{"messages": CONVERSATION}]):
        body = {"model": MODERATION_MODEL, "input": value}
        out = check("chat_classifications", dialect, api.call("chat_classifications", dialect, json=body))
        assert len(out["results"]) == 1 and "scores" in out["results"][0]["moderation"]


def _ocr(api: Api, dialect: str) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "doc", "schema": {
        "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}
    for extra in ({}, {"include_image_base64": True, "table_format": "html", "extract_header": True,
                       "extract_footer": True, "document_annotation_format": schema}):
        body = {"model": OCR_MODEL, "document": {"type": "document_url", "document_url": data_url(
            "head\n| a |\n<img> one\nfoot\fpage two")}, **extra}
        out = check("ocr", dialect, api.call("ocr", dialect, json=body))
        assert [p["index"] for p in out["pages"]] == [0, 1] and out["usage_info"]["pages_processed"] == 2
        assert ("document_annotation" in out) == bool(extra) and out["pages"][0]["images"][0]["id"] == "img-0.jpeg"


def _audio_form(**fields: str) -> dict[str, Any]:
    return {"data": {"model": SPEECH_MODEL, "timestamp_granularities": "segment", **fields},
            "files": {"file": ("speech.wav", tone_wav([True, True, True, True]), "audio/wav")}}


def _transcription(api: Api, dialect: str) -> None:
    out = check("create_transcription", dialect, api.call("create_transcription", dialect, **_audio_form()))
    assert out["text"] and len(out["segments"]) == 2 and out["usage"]["prompt_audio_seconds"] == 4


def _streaming_transcription(api: Api, dialect: str) -> None:
    """Every event validates against the spec's TranscriptionStreamEvents (its ``event`` and ``data`` lines)."""
    r = api.call("create_streaming_transcription", dialect, **_audio_form(stream="true"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    names = []
    for block in r.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = {"event": lines["event"], "data": json.loads(lines["data"])}
        assert_valid({"$ref": "#/components/schemas/TranscriptionStreamEvents"}, SCHEMAS, event)
        names.append(lines["event"])
    assert names[0] == "transcription.language" and names[-1] == "transcription.done"


BATCH_CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _batch_job(api: Api, dialect: str, run: bool = True) -> str:
    if not run:
        hold(api.services)
    body = {"endpoint": "/v1/chat/completions", "model": "mistral-small-latest", "metadata": {"k": "v"},
            "requests": [{"custom_id": "0", "body": BATCH_CHAT}, {"custom_id": "1", "body": {"max_tokens": 1}}]}
    return check("create_batch_job", dialect, api.call("create_batch_job", dialect, json=body))["id"]


def _create_batch_job(api: Api, dialect: str) -> None:
    file_id = api.upload(dialect, "requests.jsonl", b'{"custom_id": "a", "body": {"max_tokens": 2, "messages": '
                         b'[{"role": "user", "content": "x"}]}}\n', "batch").json()
    file_id = file_id.get("data", file_id)["id"]
    body = {"endpoint": "/v1/chat/completions", "model": "mistral-small-latest", "input_files": [file_id]}
    out = check("create_batch_job", dialect, api.call("create_batch_job", dialect, json=body))
    assert out["status"] == "QUEUED" and out["input_files"] == [file_id] and out["total_requests"] == 1


def _get_batch_job(api: Api, dialect: str) -> None:
    job_id = _batch_job(api, dialect)
    get = lambda i: check("get_batch_job", dialect, api.call("get_batch_job", dialect, {"job_id": i},  # noqa: E731
                                                             params={"inline": "true"}))
    body = wait_done(get, job_id)
    assert body["status"] == "SUCCESS" and len(body["outputs"]) == 2 and body["output_file"] and body["error_file"]


def _get_batch_jobs(api: Api, dialect: str) -> None:
    ids = {_batch_job(api, dialect, run=False) for _ in range(2)}
    body = check("get_batch_jobs", dialect, api.call("get_batch_jobs", dialect, params={"status": "QUEUED"}))
    assert {j["id"] for j in body["data"]} == ids and body["total"] == 2


def _cancel_batch_job(api: Api, dialect: str) -> None:
    job_id = _batch_job(api, dialect, run=False)
    body = check("cancel_batch_job", dialect, api.call("cancel_batch_job", dialect, {"job_id": job_id}))
    assert body["status"] == "CANCELLED"


def _ft_job(api: Api, dialect: str, *, wait_for: str | None = "SUCCESS", **fields: Any) -> dict[str, Any]:
    """A fine-tuning job on the fake trainers (the base's GGUF is a placeholder file: nothing reads it)."""
    deps = api.services.fine_tuning.deps  # type: ignore[union-attr]
    tokenizer = tiny_tokenizer(CORPUS)  # once: transformers' lazy imports are not thread-safe
    deps.trainer, deps.merge, deps.tokenizer = FakeTrainer(), fake_merge, lambda path: tokenizer
    deps.locate, deps.poll_seconds = (lambda entry: Path(__file__)), 0.01
    api.services.classifier_trainer = FakeClassifierTrainer()
    body = {"model": "ministral-3b-latest", "hyperparameters": {"training_steps": 12},
            "training_files": [{"file_id": api.file_id()}], "auto_start": True, **fields}
    job = check("create_fine_tuning_job", dialect, api.call("create_fine_tuning_job", dialect, json=body))
    get = lambda i: check("get_fine_tuning_job", dialect,  # noqa: E731
                          api.call("get_fine_tuning_job", dialect, {"job_id": i}))
    for _ in range(1200 if wait_for else 0):
        job = get(job["id"])
        if job["status"] == wait_for:
            break
        time.sleep(0.025)
    return job  # type: ignore[no-any-return]


def _create_fine_tuning_job(api: Api, dialect: str) -> None:
    assert _ft_job(api, dialect, wait_for=None)["status"] in ("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")
    targets = [{"name": "sentiment", "labels": ["positive", "negative"]}]
    lines = b'{"text": "great", "labels": {"sentiment": "positive"}}\n'
    r = api.upload(dialect, "classes.jsonl", lines).json()
    classifier = _ft_job(api, dialect, job_type="classifier", classifier_targets=targets,
                         training_files=[r.get("data", r)["id"]], validation_files=[r.get("data", r)["id"]])
    assert classifier["status"] == "SUCCESS" and classifier["checkpoints"][0]["metrics"]["targets"]
    body = {"model": "ministral-3b-latest", "hyperparameters": {}, "training_files": [{"file_id": api.file_id()}]}
    estimate = check("create_fine_tuning_job", dialect, api.call("create_fine_tuning_job", dialect, json=body,
                                                                 params={"dry_run": "true"}))
    assert estimate["object"] == "job.metadata" and estimate["training_steps"] == 1


def _list_fine_tuning_jobs(api: Api, dialect: str) -> None:
    job = _ft_job(api, dialect, wait_for=None, suffix="listed")
    out = check("list_fine_tuning_jobs", dialect, api.call("list_fine_tuning_jobs", dialect,
                                                           params={"suffix": "listed"}))
    assert [j["id"] for j in out["data"]] == [job["id"]] and out["total"] == 1


def _get_fine_tuning_job(api: Api, dialect: str) -> None:
    job = _ft_job(api, dialect, integrations=[{"project": "p", "api_key": "k" * 40}])
    assert job["status"] == "SUCCESS" and job["checkpoints"] and job["events"] and job["fine_tuned_model"]


def _start_fine_tuning_job(api: Api, dialect: str) -> None:
    job = _ft_job(api, dialect, wait_for="VALIDATED", auto_start=False)
    out = check("start_fine_tuning_job", dialect, api.call("start_fine_tuning_job", dialect, {"job_id": job["id"]}))
    assert out["status"] in ("STARTED", "RUNNING", "SUCCESS")


def _cancel_fine_tuning_job(api: Api, dialect: str) -> None:
    job = _ft_job(api, dialect, wait_for="VALIDATED", auto_start=False)
    out = check("cancel_fine_tuning_job", dialect, api.call("cancel_fine_tuning_job", dialect, {"job_id": job["id"]}))
    assert out["status"] == "CANCELLED"


AGENT = {"model": "mistral-small-latest", "name": "contract", "instructions": "Be brief.", "description": "d",
         "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
         "completion_args": {"temperature": 0.3}, "metadata": {"team": "a"}, "version_message": "first"}


def _agent(api: Api, dialect: str, **fields: Any) -> dict[str, Any]:
    return check("create_agent", dialect, api.call("create_agent", dialect, json={**AGENT, **fields}))  # type: ignore[no-any-return]


def _create_agent(api: Api, dialect: str) -> None:
    target = _agent(api, dialect)
    out = _agent(api, dialect, handoffs=[target["id"]], guardrails=[{"moderation_llm_v2": {"action": "block"}}])
    assert out["id"].startswith("ag_") and (out["version"], out["versions"]) == (0, [0])


def _list_agents(api: Api, dialect: str) -> None:
    ids = [_agent(api, dialect)["id"] for _ in range(3)]
    body = check("list_agents", dialect, api.call("list_agents", dialect, params={"page_size": 2, "page": 1}))
    assert [a["id"] for a in body] == ids[2:]


def _get_agent(api: Api, dialect: str) -> None:
    agent_id = _agent(api, dialect)["id"]
    for params in ({}, {"agent_version": 0}):
        body = check("get_agent", dialect, api.call("get_agent", dialect, {"agent_id": agent_id}, params=params))
        assert body["id"] == agent_id and body["completion_args"]["temperature"] == 0.3


def _update_agent(api: Api, dialect: str) -> None:
    agent_id = _agent(api, dialect)["id"]
    body = check("update_agent", dialect, api.call("update_agent", dialect, {"agent_id": agent_id},
                                                   json={"name": "renamed", "deployment_chat": True}))
    assert (body["name"], body["version"], body["versions"], body["deployment_chat"]) == ("renamed", 1, [0, 1], True)


def _update_agent_version(api: Api, dialect: str) -> None:
    agent_id = _agent(api, dialect)["id"]
    api.call("update_agent", dialect, {"agent_id": agent_id}, json={"name": "v1"})
    body = check("update_agent_version", dialect, api.call("update_agent_version", dialect, {"agent_id": agent_id},
                                                           params={"version": 0}))
    assert (body["name"], body["version"], body["versions"]) == ("contract", 0, [0, 1])


def _delete_agent(api: Api, dialect: str) -> None:
    agent_id = _agent(api, dialect)["id"]
    r = api.call("delete_agent", dialect, {"agent_id": agent_id})
    assert r.status_code == 204 and r.content == b""
    assert api.call("get_agent", dialect, {"agent_id": agent_id}).status_code == 404


def _agent_completion(api: Api, dialect: str) -> None:
    agent_id = _agent(api, dialect)["id"]
    body = {"agent_id": agent_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    out = check("create_agent_completion", dialect, api.call("create_agent_completion", dialect, json=body))
    assert out["choices"][0]["message"]["role"] == "assistant" and out["model"] == "mistral-small-latest"
    _check_stream(api.call("create_agent_completion", dialect, json={**body, "stream": True}))


CONVERSATION_START = {"model": "mistral-small-latest", "inputs": "hi", "completion_args": {"max_tokens": 4}}


def _conversation(api: Api, dialect: str, **extra: Any) -> dict[str, Any]:
    r = api.call("create_conversation", dialect, json={**CONVERSATION_START, **extra})
    return check("create_conversation", dialect, r)  # type: ignore[no-any-return]


def _check_conversation_stream(r: httpx.Response) -> list[str]:
    """Every event validates against the spec's ConversationEvents (its ``event`` and ``data`` lines; the
    ``#stream`` twin's answer); no [DONE]."""
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    names = []
    for block in r.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = {"event": lines["event"], "data": json.loads(lines["data"])}
        assert_valid({"$ref": "#/components/schemas/ConversationEvents"}, SCHEMAS, event)
        names.append(lines["event"])
    assert names[0] == "conversation.response.started" and names[-1] == "conversation.response.done"
    return names


def _create_conversation(api: Api, dialect: str) -> None:
    out = _conversation(api, dialect, instructions="Be brief", metadata={"k": "v"})
    assert out["outputs"][0]["type"] == "message.output"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    out = _conversation(api, dialect, tools=tools, completion_args={"tool_choice": "any", "max_tokens": 16})
    assert out["outputs"][-1]["type"] == "function.call"
    names = _check_conversation_stream(api.call("create_conversation", dialect,
                                                json={**CONVERSATION_START, "stream": True}))
    assert "message.output.delta" in names
    names = _check_conversation_stream(api.call("create_conversation", dialect, json={
        **CONVERSATION_START, "stream": True, "tools": tools, "completion_args": {"tool_choice": "any"}}))
    assert "function.call.delta" in names


def _conversation_id(api: Api, dialect: str) -> dict[str, str]:
    return {"conversation_id": _conversation(api, dialect)["conversation_id"]}


def _list_conversations(api: Api, dialect: str) -> None:
    ids = {_conversation_id(api, dialect)["conversation_id"] for _ in range(2)}
    assert {c["id"] for c in check("list_conversations", dialect, api.call("list_conversations", dialect))} >= ids


def _get_conversation(api: Api, dialect: str) -> None:
    values = _conversation_id(api, dialect)
    out = check("get_conversation", dialect, api.call("get_conversation", dialect, values))
    assert out["id"] == values["conversation_id"] and out["model"] == "mistral-small-latest"


def _update_conversation(api: Api, dialect: str) -> None:
    values = _conversation_id(api, dialect)
    out = check("update_conversation", dialect, api.call("update_conversation", dialect, values, json={
        "inputs": [{"type": "message.input", "role": "user", "content": "again"}]}))
    assert out["conversation_id"] == values["conversation_id"]
    _check_conversation_stream(api.call("update_conversation", dialect, values, json={"inputs": "x", "stream": True}))


def _delete_conversation(api: Api, dialect: str) -> None:
    r = api.call("delete_conversation", dialect, _conversation_id(api, dialect))
    assert r.status_code == 204 and not r.content


def _conversation_history(api: Api, dialect: str) -> None:
    out = check("get_conversation_history", dialect,
                api.call("get_conversation_history", dialect, _conversation_id(api, dialect)))
    assert [e["type"] for e in out["entries"]] == ["message.input", "message.output"]


def _conversation_messages(api: Api, dialect: str) -> None:
    out = check("get_conversation_messages", dialect,
                api.call("get_conversation_messages", dialect, _conversation_id(api, dialect)))
    assert len(out["messages"]) == 2


def _restart_conversation(api: Api, dialect: str) -> None:
    values = _conversation_id(api, dialect)
    first = api.call("get_conversation_history", "native", values).json()["entries"][0]["id"]
    body = {"from_entry_id": first, "inputs": "x"}
    out = check("restart_conversation", dialect, api.call("restart_conversation", dialect, values, json=body))
    assert out["conversation_id"] != values["conversation_id"]
    _check_conversation_stream(api.call("restart_conversation", dialect, values, json={**body, "stream": True}))


PRODUCERS: dict[str, Callable[[Api, str], None]] = {
    **library_producers(check),
    "create_fine_tuning_job": _create_fine_tuning_job,
    "list_fine_tuning_jobs": _list_fine_tuning_jobs,
    "get_fine_tuning_job": _get_fine_tuning_job,
    "start_fine_tuning_job": _start_fine_tuning_job,
    "cancel_fine_tuning_job": _cancel_fine_tuning_job,
    "create_agent": _create_agent,
    "list_agents": _list_agents,
    "get_agent": _get_agent,
    "update_agent": _update_agent,
    "update_agent_version": _update_agent_version,
    "delete_agent": _delete_agent,
    "create_agent_completion": _agent_completion,
    "create_conversation": _create_conversation,
    "list_conversations": _list_conversations,
    "get_conversation": _get_conversation,
    "update_conversation": _update_conversation,
    "delete_conversation": _delete_conversation,
    "get_conversation_history": _conversation_history,
    "get_conversation_messages": _conversation_messages,
    "restart_conversation": _restart_conversation,
    "create_batch_job": _create_batch_job,
    "get_batch_job": _get_batch_job,
    "get_batch_jobs": _get_batch_jobs,
    "cancel_batch_job": _cancel_batch_job,
    "create_embeddings": _embeddings,
    "moderations": _moderations,
    "chat_moderations": _chat_moderations,
    "classifications": _classifications,
    "chat_classifications": _chat_classifications,
    "ocr": _ocr,
    "create_transcription": _transcription,
    "create_streaming_transcription": _streaming_transcription,
    "create_chat_completions": _chat_completions,
    "create_fim_completions": _fim_completions,
    "upload_file": _upload_file,
    "list_files": _list_files,
    "retrieve_file": _retrieve_file,
    "delete_file": _delete_file,
    "download_file": _download_file,
    "get_signed_url": _get_signed_url,
    "list_available_models": _list_models,
    "retrieve_model": _retrieve_model,
    "delete_model": _delete_model,
    "update_fine_tuned_model": _update_fine_tuned_model,
    "archive_fine_tuned_model": _archive_fine_tuned_model,
    "unarchive_fine_tuned_model": _unarchive_fine_tuned_model,
}


def test_the_schema_check_is_not_vacuous() -> None:
    """References, enums, required fields and formats really are enforced by ``assert_valid``."""
    good = {"id": str(uuid.uuid4()), "object": "file", "bytes": 3, "created_at": 1, "filename": "a.jsonl",
            "purpose": "fine-tune", "sample_type": "instruct", "source": "upload"}
    assert_valid(spec_schema("upload_file"), SPEC.schemas, good)
    for bad in ({k: v for k, v in good.items() if k != "id"}, good | {"purpose": "nonsense"},
                good | {"sample_type": 3}, good | {"id": "not-a-uuid"}):
        with pytest.raises(AssertionError):
            assert_valid(spec_schema("upload_file"), SPEC.schemas, bad)
    with pytest.raises(AssertionError):
        assert_valid(lowcode_schema("upload_file"), LOWCODE_DOC["components"]["schemas"], good)  # not wrapped
    with pytest.raises(AssertionError):  # a card that is neither base nor fine-tuned
        assert_valid(spec_schema("retrieve_model"), SPEC.schemas, {"id": "m", "capabilities": {"vision": "yes"}})


def test_every_implemented_operation_has_a_contract_test() -> None:
    assert set(PRODUCERS) == {op.id for op in REGISTRY if op.implemented}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("op_id", list(PRODUCERS))
def test_response_matches_the_spec(api: Api, op_id: str, dialect: str) -> None:
    PRODUCERS[op_id](api, dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_lowcode_body_is_the_native_body_wrapped(api: Api, dialect: str) -> None:
    file_id = api.file_id()
    native = api.call("retrieve_file", "native", {"file_id": file_id}).json()
    lowcode = api.call("retrieve_file", "lowcode", {"file_id": file_id}).json()
    assert lowcode == {"data": native}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_errors_match_the_documented_error_schema(api: Api, dialect: str) -> None:
    r = api.call("retrieve_file", dialect, {"file_id": str(uuid.uuid4())})
    assert r.status_code == 404
    doc = NATIVE_DOC if dialect == "native" else LOWCODE_DOC
    path = REGISTRY.get("retrieve_file").path if dialect == "native" else REGISTRY.get("retrieve_file").lowcode_path
    schema = doc["paths"][path]["get"]["responses"]["404"]["content"]["application/json"]["schema"]
    assert_valid(schema, doc["components"]["schemas"], r.json())


# -- served documents -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "committed"), [
    ("/mistralai/openapi", "lowcode.json"),
    ("/mistralai/definition", "definition.json"),
    ("/openapi.json", "native.json"),
])
def test_served_documents_equal_the_committed_files(client: TestClient, path: str, committed: str) -> None:
    r = client.get(path)  # no token needed
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == json.loads((OPENAPI_DIR / committed).read_text())


def test_definition_lists_every_operation_in_the_old_format(client: TestClient) -> None:
    definition = client.get("/mistralai/definition").json()
    entries = {entry["id"]: entry for entry in definition["operations"]}
    assert set(entries) == {op.id for op in REGISTRY}
    for op in REGISTRY:
        assert entries[op.id]["path"] == op.old_format_path
        assert [p["name"] for p in entries[op.id]["path_params"]] == [p.name for p in op.path_params]


def test_lowcode_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/mistralai/openapi").json()["paths"]
    for op in REGISTRY:
        assert op.method.lower() in paths[op.lowcode_path], op.id


def test_health_needs_no_token(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
