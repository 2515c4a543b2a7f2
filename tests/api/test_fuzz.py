"""Bounded, deterministic schemathesis runs over both dialects' documents against a live loopback server.

Pass criteria: no 5xx other than documented 501s, and every response conforms to the document (status documented,
content type, body schema). One pass on the fake engines covers every operation; one pass on the real engines
(SmolLM2-135M for every chat alias, MiniLM for embeddings) covers the engine-backed operations. Generation is
derandomized and bounded per operation, so CI sees the same cases every run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audio_support import tone_wav
from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.manager import kind_of
from mistral_gateway.services.container import build_services
from ocr_support import OCR_MODEL, data_url, white_png, with_fake_ocr
from support import LiveServer

pytestmark = [pytest.mark.e2e]

MAX_TOKENS = 8  # every generated completion is clamped to this (and n to 2): bounded time on the real engine
CHAT_IDS = ("ministral-3b-latest", "mistral-small-latest", "codestral-latest")  # all SmolLM2 here
EMBED_IDS = ("mistral-embed",)
# Operations whose fuzzing must include successes (the service reached, not only validation and 404s).
REACHED = ("GET /v1/files", "POST /v1/files", "GET /v1/files/{file_id}", "GET /v1/files/{file_id}/content",
           "GET /v1/files/{file_id}/url", "GET /v1/models", "GET /v1/models/{model_id}", "POST /v1/agents",
           "GET /v1/agents", "GET /v1/agents/{agent_id}", "POST /v1/conversations")
ROOT = Path(__file__).resolve().parents[2]
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
ENGINE_OPERATIONS = ("/v1/chat/completions", "/v1/fim/completions", "/v1/embeddings", "/v1/moderations",
                     "/v1/chat/moderations", "/v1/classifications", "/v1/chat/classifications", "/v1/ocr",
                     "/v1/audio/transcriptions", "/v1/agents/completions")
# Whisper base spends 20-30 s on a generated second of tone (no speech: every temperature of its fallback is tried),
# so its operation is fuzzed on the fake engine only; tests/e2e/test_transcription_sdk.py runs it on real speech.
REAL_OPERATIONS = tuple(o for o in ENGINE_OPERATIONS if o != "/v1/audio/transcriptions")
CLASSIFIER_IDS = ("mistral-moderation-latest", "mistral-moderation-2411")
CLASSIFIER_PATHS = ("/moderations", "/classifications")
OCR_IDS = (OCR_MODEL, "mistral-ocr-2512")
OCR_KEPT = ("model", "include_image_base64", "table_format", "extract_header", "extract_footer", "include_blocks")
SPEECH_IDS = ("voxtral-mini-latest", "voxtral-mini-2507")
SPEECH = tone_wav([True])  # one second the fake engine hears (real Whisper: a tone, no words)


def fuzz_catalog(engine: str) -> list[ModelEntry]:
    """Every chat alias of the default catalog served by SmolLM2-135M (or the fake engine); embeddings as shipped
    (or fake)."""
    bundled = default_models()
    chat = [m for m in bundled if "completion_chat" in m.capabilities and kind_of(m) == "text"]
    small = next(m for m in chat if m.id == "smollm2-135m-instruct")
    aliases = sorted({a for m in chat for a in [m.id, *m.aliases]} - {small.id})
    fim = next(m.fim_template for m in chat if m.fim_template)
    tiny = small.model_copy(update={
        "aliases": aliases, "capabilities": ["completion_chat", "completion_fim", "function_calling"],
        "fim_template": fim, "parallel": 2, "max_context_length": 1024})
    embed = [m for m in bundled if m not in chat]  # embeddings, classifiers, speech
    if engine == "fake":
        return with_fake_ocr([m.model_copy(update={"engine": "fake", "asset": None}) for m in [tiny, *embed]])
    return [tiny, *embed]


@dataclass(frozen=True)
class Stack:
    base_url: str
    token: str
    file_ids: tuple[str, ...]  # files uploaded beforehand, so file-id paths reach the service, not only its 404
    agent_ids: tuple[str, ...] = ()  # likewise for agent ids (paths, and agents completions' agent_id)


def _stack(data_dir: Path, weights: Path, engine: str) -> Iterator[Stack]:
    settings = Settings(data_dir=data_dir, weights_path=weights, bootstrap_dev_token=False,
                        models=fuzz_catalog(engine))
    services = build_services(settings)
    token, _ = services.tokens.create("fuzz")
    server = LiveServer(services)
    server.start()
    try:
        auth = {"Authorization": f"Bearer {token}"}
        uploads = [("train.jsonl", b'{"messages": []}\n', "fine-tune"), ("notes.txt", b"hello\n", "ocr")]
        file_ids = tuple(
            httpx.post(f"{server.base_url}/v1/files", headers=auth, files={"file": (name, data)},
                       data={"purpose": purpose}).raise_for_status().json()["id"]
            for name, data, purpose in uploads)
        agent = httpx.post(f"{server.base_url}/v1/agents", headers=auth, json={
            "model": CHAT_IDS[0], "name": "fuzz", "instructions": "Be brief."}).raise_for_status().json()
        yield Stack(server.base_url, token, file_ids, (agent["id"],))
    finally:
        server.stop()
        services.close()


@pytest.fixture(scope="module")
def fake_stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path_factory.mktemp("fuzz-fake"), weights_dir, "fake")


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path_factory.mktemp("fuzz-real"), weights_dir, "real")


DOCUMENTS = {"native": ROOT / "openapi" / "native.json", "lowcode": ROOT / "openapi" / "lowcode.json"}


# Server bugs this run finds in areas other branches own, as ``METHOD /path`` -> what and where it is fixed. strict:
# once the fix is merged the case passes, the xfail turns into a failure, and the entry must go.
KNOWN_BUGS: dict[tuple[str, str], str] = {
}


def operation_labels(dialect: str, only: tuple[str, ...] = (), engine: str = "fake") -> list[Any]:
    """``METHOD /path`` of every documented operation (from the committed document, so collection needs no server;
    the drift check keeps it equal to what the server serves)."""
    doc = json.loads(DOCUMENTS[dialect].read_text())
    labels = [f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item
              if not only or any(path.endswith(o) for o in only)]
    return [pytest.param(label, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[engine, label]))
            if (engine, label) in KNOWN_BUGS else label for label in labels]


def served_schema(base_url: str, dialect: str) -> Any:
    """The document as the live server serves it, aimed at that server."""
    url = f"{base_url}/openapi.json" if dialect == "native" else f"{base_url}/mistralai/openapi"
    schema = schemathesis.openapi.from_url(url)
    schema.config.update(base_url=base_url)  # both documents' paths are absolute
    return schema


def fuzz(stack: Stack, dialect: str, label: str, settings: hypothesis.settings) -> Counter[int]:
    """Positive then negative cases for one operation; returns how often each status was answered."""
    schema = served_schema(stack.base_url, dialect)
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    auth = ({"headers": {"Authorization": f"Bearer {stack.token}"}} if dialect == "native"
            else {"params": {"api_token": stack.token}})
    implemented = operation.definition.raw.get("x-status") == "implemented"
    if not implemented:  # answered 501 before the body is read: a few cases show the shape and the status
        settings = hypothesis.settings(settings, max_examples=min(settings.max_examples, 3))
    statuses: Counter[int] = Counter()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @settings
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            turn = sum(statuses.values())
            case.body = steer(case.body, case.path, turn, stack.agent_ids)
            case.path_parameters = steer_path(case.path_parameters, case.method, stack.file_ids, turn,
                                              stack.agent_ids)
            response = case.call(timeout=60, **auth)
            status = response.status_code
            statuses[status] += 1
            assert status < 500 or (status == 501 and not implemented), (
                f"{status} from {case.method} {case.formatted_path}: {response.text[:500]}\n{case.as_curl_command()}")
            case.validate_response(response, checks=CHECKS, headers=auth.get("headers"))

        run()
    return statuses


def steer(body: Any, path: str, turn: int, agent_ids: tuple[str, ...] = ()) -> Any:
    """Small completions on served models, whatever was generated. By the case's turn (so runs repeat, and every run
    reaches the engines whatever the schema generates): three generated model names in four become a served id;
    half the chats end with a user message, as Mistral requires, and one in four is a plain one-message chat."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if isinstance(body.get("model"), str):
        ids = EMBED_IDS if path.endswith("/embeddings") else CLASSIFIER_IDS if path.endswith(CLASSIFIER_PATHS) \
            else OCR_IDS if path.endswith("/ocr") else SPEECH_IDS if path.endswith("/audio/transcriptions") \
            else CHAT_IDS
        if turn % 4 != 3:
            body["model"] = ids[turn % len(ids)]
    if path.endswith("/agents/completions") and agent_ids and turn % 4 != 3:
        body["agent_id"] = agent_ids[turn % len(agent_ids)]
    if path.endswith(("/chat/completions", "/agents/completions")) and isinstance(body.get("messages"), list):
        if turn % 4 == 2:  # only the model (or agent) kept: any other generated field may be refused, and a run
            # whose every case is refused never reaches the engine (the cases change with the documents)
            body = {k: v for k, v in body.items() if k in ("model", "agent_id")}
            body["messages"] = [{"role": "user", "content": "Say hi."}]
        elif turn % 4 == 1:
            body["messages"] = [*body["messages"], {"role": "user", "content": "Say hi."}]
    if turn % 4 == 2 and path.endswith(("/chat/moderations", "/chat/classifications")):
        # generated conversations rarely end well-formed: one in four is a plain one, so the engine is reached
        conversation = [{"role": "user", "content": "Say hi."}]
        body["input"] = conversation if path.endswith("/moderations") else {"messages": conversation}
    if path.endswith("/ocr") and turn % 4 in (1, 2):
        # a document each engine reads: text pages for the fake one, a blank page image for rapidocr
        # (without the options refused here and the annotations, which would run the chat model)
        body = {k: v for k, v in body.items() if k in OCR_KEPT}
        body["document"] = {"document_url": data_url("fuzz page") if turn % 4 == 1 else white_png()}
    if path.endswith("/audio/transcriptions") and turn % 4 != 3:  # real audio, the one source, no diarization
        body = {k: v for k, v in body.items() if k not in ("file_url", "file_id", "speaker_references")}
        body.update(file=SPEECH, diarize=False)
    if path.endswith("/v1/conversations") and turn % 4 in (1, 2):
        # a model conversation with one user message (generated ones name unknown agents or refused tools), the
        # generated name, metadata, store and the like kept
        body = {k: v for k, v in body.items() if k not in ("agent_id", "agent_version", "tools", "inputs")}
        body.update(model=CHAT_IDS[turn % len(CHAT_IDS)], inputs="Say hi.", completion_args={"max_tokens": MAX_TOKENS})
    if path.endswith(("/chat/completions", "/fim/completions", "/agents/completions")):
        body["max_tokens"] = min(_int(body.get("max_tokens"), MAX_TOKENS), MAX_TOKENS)
        if isinstance(body.get("min_tokens"), int) and body["min_tokens"] > body["max_tokens"]:
            body["min_tokens"] = body["max_tokens"]
        if isinstance(body.get("n"), int) and body["n"] > 2:
            body["n"] = 2
    return body


def steer_path(params: dict[str, Any] | None, method: str, file_ids: tuple[str, ...], turn: int,
               agent_ids: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Most generated file, model and agent ids become existing ones (never for DELETE, which would remove them)."""
    if not params or method == "DELETE":
        return params
    params = dict(params)
    for name, ids in (("file_id", file_ids), ("model_id", CHAT_IDS + EMBED_IDS), ("agent_id", agent_ids)):
        if name in params and ids and turn % 4 != 3:
            params[name] = ids[turn % len(ids)]
    return params


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


FAST = hypothesis.settings(max_examples=10, derandomize=True, deadline=None, database=None,
                           suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
REAL = hypothesis.settings(FAST, max_examples=5)


@pytest.mark.parametrize("label", operation_labels("native"))
def test_native_document(label: str, fake_stack: Stack) -> None:
    statuses = fuzz(fake_stack, "native", label, FAST)
    if label.endswith(ENGINE_OPERATIONS) or label in REACHED:
        assert statuses[200] > 0, statuses  # the run reached the service, not only its validation


@pytest.mark.parametrize("label", operation_labels("lowcode"))
def test_lowcode_document(label: str, fake_stack: Stack) -> None:
    statuses = fuzz(fake_stack, "lowcode", label, FAST)
    if label.endswith(ENGINE_OPERATIONS):
        assert statuses[200] > 0, statuses


@pytest.mark.slow
@pytest.mark.parametrize("label", operation_labels("native", REAL_OPERATIONS, engine="real"))
def test_native_document_on_the_real_engines(label: str, real_stack: Stack) -> None:
    statuses = fuzz(real_stack, "native", label, REAL)
    assert statuses[200] > 0, statuses  # the real engine answered
