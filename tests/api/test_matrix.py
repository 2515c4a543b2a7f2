"""Every registry operation x both dialects: authentication, scopes, 501s, error envelopes and LowCodeAPI URL forms.

The parameters come from the registry itself, so an operation added to the table is covered without touching this
file. One app and one SQLite database serve the whole module (real HTTP semantics through Starlette's TestClient);
tests that need resources create their own.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from batch_support import hold
from mistral_gateway.config import Settings, default_models
from mistral_gateway.http.app import create_app
from mistral_gateway.registry import CATEGORY_SCOPES, Operation, Registry
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.storage.records import FineTunedModelRecord

REGISTRY = Registry.load()
OPS: list[Operation] = list(REGISTRY)
DIALECTS = ("native", "lowcode")
IMPLEMENTED_IDS = {
    "list_files", "upload_file", "retrieve_file", "delete_file", "download_file", "get_signed_url",
    "list_available_models", "retrieve_model", "delete_model", "create_chat_completions", "create_fim_completions",
    "create_embeddings", "create_batch_job", "get_batch_job", "get_batch_jobs", "cancel_batch_job",
    "moderations", "chat_moderations", "classifications", "chat_classifications", "ocr", "create_transcription",
    "create_streaming_transcription", "create_agent", "list_agents", "get_agent", "update_agent", "delete_agent",
    "update_agent_version", "create_agent_completion",
    "create_conversation", "list_conversations", "get_conversation", "update_conversation", "delete_conversation",
    "get_conversation_history", "get_conversation_messages", "restart_conversation",
    "update_fine_tuned_model", "archive_fine_tuned_model", "unarchive_fine_tuned_model",
    "create_fine_tuning_job", "list_fine_tuning_jobs", "get_fine_tuning_job", "start_fine_tuning_job",
    "cancel_fine_tuning_job",
    "list_libraries", "create_library", "get_library", "update_library", "delete_library", "list_library_documents",
    "create_library_document", "get_library_document", "delete_library_document",
    # extras beyond the seed
    "update_library_document", "get_library_document_text_content", "get_library_document_status",
    "reprocess_library_document",
}
# How each dialect may carry the token.
CREDENTIAL_FORMS = {"native": ("bearer", "x-api-key"), "lowcode": ("query", "header")}
NATIVE_ERROR_KEYS = {"object", "message", "type", "param", "code"}
NATIVE_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "invalid_request_error",
    404: "invalid_request_error", 405: "invalid_request_error", 501: "server_error",
}
JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


# -- parametrisation --------------------------------------------------------------------------------------------

def _params(ops: list[Operation], dialects: tuple[str, ...] = DIALECTS) -> list[Any]:
    return [pytest.param(op, d, id=f"{d}-{op.id}") for d in dialects for op in ops]


ALL = _params(OPS)
UNIMPLEMENTED = _params([op for op in OPS if not op.implemented])
WITH_PATH_PARAMS = [op for op in OPS if op.path_params]
PATH_PARAM_CASES = [pytest.param(op, p.name, id=f"{op.id}-{p.name}") for op in WITH_PATH_PARAMS for p in op.path_params]
CREDENTIAL_CASES = [
    pytest.param(op, d, how, id=f"{d}-{how}-{op.id}") for d in DIALECTS for how in CREDENTIAL_FORMS[d] for op in OPS
]
ROUTES: dict[str, set[str]] = {}
for _op in OPS:
    ROUTES.setdefault(_op.path, set()).update((_op.method, *_op.method_aliases))


# -- the shared app ---------------------------------------------------------------------------------------------

@dataclass
class Env:
    services: Services
    client: TestClient
    token: str
    workspace_id: str
    scoped: dict[tuple[str, ...], str] = field(default_factory=dict)

    def token_with(self, *scopes: str) -> str:
        if scopes not in self.scoped:
            self.scoped[scopes], _ = self.services.tokens.create("scoped", scopes=list(scopes))
        return self.scoped[scopes]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # The default catalog's names on the deterministic fake engine: this matrix checks routing, credentials and
    # scopes, and a real model asked to "complete" a placeholder without max_tokens may generate for minutes.
    models = [m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()]
    settings = Settings(data_dir=tmp_path_factory.mktemp("matrix") / "data", bootstrap_dev_token=False, models=models)
    services = build_services(settings)
    token, record = services.tokens.create("matrix", scopes=["*"])
    with TestClient(create_app(services=services), base_url="http://testserver") as client:
        yield Env(services, client, token, record.workspace_id)
    services.close()


# -- requests ---------------------------------------------------------------------------------------------------

def fake_values(op: Operation) -> dict[str, str]:
    return {p.name: str(uuid.uuid4()) for p in op.path_params}


def url_for(op: Operation, dialect: str, values: dict[str, str], *, old: bool = False) -> str:
    if dialect == "native":
        template = op.path
    elif old:
        return op.old_format_path
    else:
        template = op.lowcode_path
    return template.format(**{name: quote(value, safe="") for name, value in values.items()})


def placeholder(name: str, kind: str) -> Any:
    if name == "model":
        return "mistral-small-latest"
    if name == "messages":
        return [{"role": "user", "content": "hi"}]
    first = kind.split("|")[0]
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": False, "array": ["x"], "object": {}}.get(first, "x")


def body_kwargs(op: Operation) -> dict[str, Any]:
    """A minimal, valid-looking body: the op's required body fields with placeholder values."""
    if op.body == "json":
        return {"json": {p.name: placeholder(p.name, p.type) for p in op.body_params if p.required}}
    if op.body == "multipart":
        data = {p.name: str(placeholder(p.name, p.type)) for p in op.body_params if p.required and p.type != "file"}
        if op.stream == "always":
            data["stream"] = "true"
        return {"files": {"file": ("sample.jsonl", JSONL, "application/jsonl")}, "data": data}
    return {}


def credentials(dialect: str, token: str | None, how: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) carrying ``token`` the way ``how`` says (default: Bearer, or ?api_token=)."""
    if token is None:
        return {}, {}
    how = how or CREDENTIAL_FORMS[dialect][0]
    if how == "bearer":
        return {"Authorization": f"Bearer {token}"}, {}
    if how == "x-api-key":
        return {"x-api-key": token}, {}
    if how == "header":
        return {"x-api-token": token}, {}
    return {}, {"api_token": token}


def send(env: Env, op: Operation, dialect: str, *, token: str | None, values: dict[str, str] | None = None,
         old: bool = False, query: dict[str, str] | None = None, how: str | None = None,
         body: dict[str, Any] | None = None, extra_headers: dict[str, str] | None = None) -> httpx.Response:
    values = fake_values(op) if values is None else values
    headers, params = credentials(dialect, token, how)
    headers |= extra_headers or {}
    params |= {p.name: str(placeholder(p.name, p.type)) for p in op.query_params if p.required}
    if old:
        params |= values
    params |= query or {}
    return env.client.request(op.method, url_for(op, dialect, values, old=old), params=params, headers=headers,
                              **(body or body_kwargs(op)))


def assert_error(r: httpx.Response, dialect: str, status: int, code: str | None = None, *,
                 exact: bool = True) -> str:
    """The dialect's error shape with ``status``; returns the message. ``exact``: LowCodeAPI error has only
    ``message`` and ``code`` (errors naming a parameter also carry ``param``)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if dialect == "native":
        assert set(body) == NATIVE_ERROR_KEYS, body
        assert body["object"] == "error"
        assert body["type"] == NATIVE_ERROR_TYPES[status]
        assert body["param"] is None or isinstance(body["param"], str)
        err = body
    else:
        assert set(body) == {"data"}, body
        assert set(body["data"]) == {"error"}, body
        err = body["data"]["error"]
        if exact:
            assert set(err) == {"message", "code"}, err
        else:
            assert {"message", "code"} <= set(err) <= {"message", "code", "param", "detail"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["code"], str) and err["code"]
    if code is not None:
        assert err["code"] == code, err
    return err["message"]


def names_of(op: Operation) -> set[str]:
    names = {op.name}
    if op.twin:
        names.add(REGISTRY.get(op.twin).name)
    return names


# -- the registry itself ----------------------------------------------------------------------------------------

def test_registry_has_the_55_operations() -> None:
    assert len(REGISTRY.seed) == 55
    assert len({op.id for op in OPS}) == len(REGISTRY)
    assert {op.id for op in OPS if op.implemented} == IMPLEMENTED_IDS
    assert {op.scope for op in OPS} == set(CATEGORY_SCOPES.values())
    for op in OPS:
        assert op.lowcode_path == "/mistralai" + op.path
        assert "{" not in op.old_format_path
        assert [p.name for p in op.path_params] == [seg[1:-1] for seg in op.path.split("/") if seg.startswith("{")]


# -- authentication and scopes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("op", "dialect"), ALL)
def test_no_token_is_401(env: Env, op: Operation, dialect: str) -> None:
    message = assert_error(send(env, op, dialect, token=None), dialect, 401, "MISSING_TOKEN")
    assert ("api_token" in message) if dialect == "lowcode" else ("Bearer" in message)
    if op.body == "json":  # authentication comes before the body is read: a broken body changes nothing
        r = send(env, op, dialect, token=None, body={"content": b'{"model": '},
                 extra_headers={"Content-Type": "application/json"})
        assert_error(r, dialect, 401, "MISSING_TOKEN")


@pytest.mark.parametrize(("op", "dialect", "how"), CREDENTIAL_CASES)
def test_invalid_token_is_401(env: Env, op: Operation, dialect: str, how: str) -> None:
    unknown = "at_" + secrets.token_urlsafe(32)
    assert_error(send(env, op, dialect, token=unknown, how=how), dialect, 401, "INVALID_TOKEN")
    assert_error(send(env, op, dialect, token="not-a-token", how=how), dialect, 401, "INVALID_TOKEN")


@pytest.mark.parametrize(("dialect", "how"), [(d, h) for d in DIALECTS for h in CREDENTIAL_FORMS[d]])
def test_valid_token_in_every_credential_form(env: Env, dialect: str, how: str) -> None:
    op = REGISTRY.get("list_available_models")
    r = send(env, op, dialect, token=env.token, how=how)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("op", "dialect"), ALL)
def test_token_without_the_scope_is_403(env: Env, op: Operation, dialect: str) -> None:
    others = [s for s in REGISTRY.scopes if s != op.scope]
    token = env.token_with(*others)  # every scope but the one needed
    message = assert_error(send(env, op, dialect, token=token), dialect, 403, "MISSING_SCOPE")
    assert repr(op.scope) in message


@pytest.mark.parametrize(("op", "dialect"), ALL)
def test_token_with_only_the_scope_passes(env: Env, op: Operation, dialect: str) -> None:
    r = send(env, op, dialect, token=env.token_with(op.scope))
    assert r.status_code not in (401, 403), r.text
    if not op.implemented:
        assert r.status_code == 501


# -- operations not built yet -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("op", "dialect"), UNIMPLEMENTED)
def test_unimplemented_operation_is_501(env: Env, op: Operation, dialect: str) -> None:
    message = assert_error(send(env, op, dialect, token=env.token), dialect, 501, "OPERATION_NOT_IMPLEMENTED")
    assert any(name in message for name in names_of(op)), message
    assert op.path in message


# -- LowCodeAPI URL formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [op for op in WITH_PATH_PARAMS if not op.implemented], ids=lambda op: op.id)
def test_old_format_reaches_the_same_unimplemented_operation(env: Env, op: Operation) -> None:
    values = fake_values(op)
    new = send(env, op, "lowcode", token=env.token, values=values)
    old = send(env, op, "lowcode", token=env.token, values=values, old=True)
    assert_error(old, "lowcode", 501, "OPERATION_NOT_IMPLEMENTED")
    assert old.json() == new.json()
    # Without a token the old format is still recognised as this operation (401, not 404).
    assert_error(send(env, op, "lowcode", token=None, values=values, old=True), "lowcode", 401, "MISSING_TOKEN")


def upload(env: Env, content: bytes = JSONL, filename: str = "train.jsonl") -> str:
    r = env.client.post("/v1/files", headers={"Authorization": f"Bearer {env.token}"},
                        files={"file": (filename, content, "application/jsonl")}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def fine_tuned_model(env: Env) -> str:
    model_id = f"ft:mistral-small-latest:{secrets.token_hex(4)}:20250101:{secrets.token_hex(4)}"
    env.services.fine_tuned.add(FineTunedModelRecord(
        id=model_id, workspace_id=env.workspace_id, root="mistral-small-latest",
        job_id="00000000-0000-4000-8000-000000000001",  # fixed, as created_at: two models compare equal but for ids
        name="matrix ft", description=None, archived=False, capabilities=("completion_chat",),
        max_context_length=32768, created_at=1735689600))
    return model_id


def real_values(env: Env, op: Operation) -> dict[str, str]:
    """Path values naming a real resource of the token's workspace (a fresh one: delete consumes it)."""
    names = [p.name for p in op.path_params]
    if names == ["file_id"]:
        return {"file_id": upload(env)}
    if op.id == "retrieve_model":
        return {"model_id": "codestral-latest"}
    if op.id == "delete_model" or (names == ["model_id"] and op.category == "Fine Tuning"):
        return {"model_id": fine_tuned_model(env)}
    if names == ["job_id"] and op.category == "Batch":  # a job held in the queue, so both formats see it alike
        hold(env.services)
        r = env.client.post("/v1/batch/jobs", headers={"Authorization": f"Bearer {env.token}"}, json={
            "endpoint": "/v1/chat/completions", "model": "mistral-small-latest", "requests": [{"body": {}}]})
        assert r.status_code == 200, r.text
        return {"job_id": r.json()["id"]}
    if names == ["job_id"] and op.category == "Fine Tuning":  # a classifier job held in the queue: nothing trains
        assert env.services.fine_tuning is not None
        env.services.fine_tuning.deps.submit = lambda workspace_id, payload, job_id: None
        r = env.client.post("/v1/fine_tuning/jobs", headers={"Authorization": f"Bearer {env.token}"}, json={
            "model": "ministral-3b-latest", "job_type": "classifier", "hyperparameters": {},
            "classifier_targets": [{"name": "t", "labels": ["a", "b"]}], "training_files": [upload(env)]})
        assert r.status_code == 200, r.text
        if op.id == "start_fine_tuning_job":  # as if its lines were checked: a job starts once VALIDATED
            env.services.fine_tuning.deps.repo.transition(r.json()["id"], "VALIDATED", int(time.time()))
        return {"job_id": r.json()["id"]}
    if names == ["agent_id"]:  # an agent with versions 0 and 1 (the version switch is sent ?version=1)
        auth = {"Authorization": f"Bearer {env.token}"}
        r = env.client.post("/v1/agents", headers=auth, json={"model": "mistral-small-latest", "name": "matrix"})
        assert r.status_code == 200, r.text
        agent_id = r.json()["id"]
        assert env.client.patch(f"/v1/agents/{agent_id}", headers=auth, json={"name": "v1"}).status_code == 200
        return {"agent_id": agent_id}
    if names == ["conversation_id"]:
        r = env.client.post("/v1/conversations", headers={"Authorization": f"Bearer {env.token}"}, json={
            "model": "mistral-small-latest", "inputs": "hi", "completion_args": {"max_tokens": 4}})
        assert r.status_code == 200, r.text
        return {"conversation_id": r.json()["conversation_id"]}
    if names[:1] == ["library_id"]:  # a fresh library, with one document in it
        auth = {"Authorization": f"Bearer {env.token}"}
        r = env.client.post("/v1/libraries", headers=auth, json={"name": "matrix"})
        assert r.status_code == 201, r.text
        values = {"library_id": r.json()["id"]}
        if names == ["library_id", "document_id"]:
            r = env.client.post(f"/v1/libraries/{values['library_id']}/documents", headers=auth,
                                files={"file": ("notes.md", b"# Notes\n\nSome text.\n", "text/markdown")})
            assert r.status_code == 201, r.text
            values["document_id"] = r.json()["id"]
            _wait_processed(env, values)  # text content and status compare equal once both are processed
        return values
    raise AssertionError(f"no resource factory for {op.id}: add one")


def _wait_processed(env: Env, values: dict[str, str]) -> None:
    """A bounded wait for the job runner to finish a document, not a timing check."""
    url = "/v1/libraries/{library_id}/documents/{document_id}/status".format(**values)
    for _ in range(600):
        r = env.client.get(url, headers={"Authorization": f"Bearer {env.token}"})
        if r.json()["process_status"] not in ("todo", "in_progress"):
            break
        time.sleep(0.05)
    assert r.json()["process_status"] == "done", r.text


def real_body(env: Env, op: Operation, values: dict[str, str]) -> dict[str, Any] | None:
    """A body naming parts of the resource (a restart's entry), where placeholders would not do."""
    if op.id == "update_conversation":
        return {"json": {"inputs": "x"}}
    if op.id != "restart_conversation":
        return None
    r = env.client.get(f"/v1/conversations/{values['conversation_id']}/history",
                       headers={"Authorization": f"Bearer {env.token}"})
    return {"json": {"from_entry_id": r.json()["entries"][0]["id"], "inputs": "x"}}


def outcome(env: Env, r: httpx.Response, values: dict[str, str]) -> tuple[Any, ...]:
    """What a response means, with the resource ids replaced by their names (so two resources compare equal)."""
    ctype = r.headers.get("content-type", "")
    if not ctype.startswith("application/json"):
        return r.status_code, ctype, r.headers.get("content-disposition"), r.content
    text = r.text
    for name, value in values.items():
        text = text.replace(value, f"<{name}>")
    body = json.loads(text)
    assert set(body) == {"data"}
    data = body["data"]
    if isinstance(data, dict) and "library_id" in data and "process_status" in data:  # a fresh library document
        return r.status_code, {k: data[k] for k in ("library_id", "name", "size", "mime_type", "hash")}
    if isinstance(data, dict) and op_times(data):  # agents: two fresh resources differ in their times only
        data = {k: "<time>" if k in ("created_at", "updated_at") else v for k, v in data.items()}
    if isinstance(data, dict) and data.get("object") == "job" and "events" in data:  # two fresh jobs: times, files
        data = {k: v for k, v in data.items() if k not in ("created_at", "modified_at", "training_files")}
        data["events"] = [{k: v for k, v in e.items() if k != "created_at"} for e in data["events"]]
    if isinstance(data, dict) and data.get("object") == "conversation.response":  # a turn: fresh ids, longer prompt
        return r.status_code, [o["type"] for o in data["outputs"]]
    if isinstance(data, dict) and "url" in data:  # signed URL: the signature and expiry differ; the bytes must not
        fetched = env.client.get(r.json()["data"]["url"])
        assert fetched.status_code == 200
        data["url"] = urlsplit(data["url"]).path
        return r.status_code, data, fetched.content
    return r.status_code, data


def op_times(data: dict[str, Any]) -> bool:
    return isinstance(data.get("created_at"), str) and isinstance(data.get("updated_at"), str)


@pytest.mark.parametrize("op", [op for op in WITH_PATH_PARAMS if op.implemented], ids=lambda op: op.id)
def test_old_format_reaches_the_same_resource(env: Env, op: Operation) -> None:
    new_values = real_values(env, op)
    # a job starts once; the same document uploaded twice is the one document (200)
    consumes = op.method in ("DELETE", "PATCH") or op.id in ("start_fine_tuning_job", "create_library_document")
    old_values = real_values(env, op) if consumes else new_values
    new = send(env, op, "lowcode", token=env.token, values=new_values, body=real_body(env, op, new_values))
    old = send(env, op, "lowcode", token=env.token, values=old_values, old=True, body=real_body(env, op, old_values))
    assert new.status_code == op.status, new.text
    assert outcome(env, old, old_values) == outcome(env, new, new_values)
    native_values = real_values(env, op)
    native = send(env, op, "native", token=env.token, values=native_values, body=real_body(env, op, native_values))
    assert native.status_code == op.status
    if op.id == "unarchive_fine_tuned_model":  # a DELETE of the archive flag: the model stays, unarchived
        for values in (new_values, old_values):
            r = send(env, REGISTRY.get("retrieve_model"), "native", token=env.token, values=values)
            assert r.status_code == 200 and r.json()["archived"] is False, r.text
    elif op.method == "DELETE":  # gone, whichever form deleted it
        readers = {"delete_conversation": "get_conversation", "delete_agent": "get_agent",
                   "delete_library": "get_library", "delete_library_document": "get_library_document"}
        retrieve = readers.get(op.id, op.id.replace("delete", "retrieve"))
        for values in (new_values, old_values):
            r = send(env, REGISTRY.get(retrieve), "native", token=env.token, values=values)
            assert_error(r, "native", 404)


@pytest.mark.parametrize(("op", "param"), PATH_PARAM_CASES)
def test_conflicting_url_forms_are_400(env: Env, op: Operation, param: str) -> None:
    values = fake_values(op)
    r = send(env, op, "lowcode", token=env.token, values=values, query={param: str(uuid.uuid4())})
    message = assert_error(r, "lowcode", 400, "CONFLICTING_PATH_PARAMETER", exact=False)
    assert param in message
    # The same value in both places is no conflict.
    agreeing = send(env, op, "lowcode", token=env.token, values=values, query={param: values[param]})
    assert agreeing.status_code != 400, agreeing.text
    if not op.implemented:
        assert agreeing.status_code == 501


@pytest.mark.parametrize(("op", "param"), PATH_PARAM_CASES)
def test_old_format_without_its_query_value_is_400(env: Env, op: Operation, param: str) -> None:
    values = fake_values(op)
    for missing in ({}, {param: ""}):
        headers, query = credentials("lowcode", env.token)
        query |= {name: value for name, value in values.items() if name != param} | missing
        query |= {p.name: str(placeholder(p.name, p.type)) for p in op.query_params if p.required}
        r = env.client.request(op.method, op.old_format_path, params=query, headers=headers, **body_kwargs(op))
        message = assert_error(r, "lowcode", 400, "MISSING_PATH_PARAMETER", exact=False)
        assert param in message
        assert r.json()["data"]["error"]["param"] == param


# -- routing errors ---------------------------------------------------------------------------------------------

UNKNOWN_PATHS = ["/v1/does-not-exist", "/v1/files/a/b/c/d", "/v1/chat/completions/extra", "/v1/"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_unknown_route_is_404(env: Env, dialect: str, path: str) -> None:
    prefix = "/mistralai" if dialect == "lowcode" else ""
    for token in (env.token, None):  # routing comes before authentication
        headers, query = credentials(dialect, token)
        r = env.client.get(prefix + path, headers=headers, params=query)
        message = assert_error(r, dialect, 404, "ROUTE_NOT_FOUND")
        if dialect == "lowcode":
            assert "/mistralai/definition" in message


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_wrong_method_is_405_with_allow(env: Env, dialect: str, path: str) -> None:
    allowed = ROUTES[path]
    method = next(m for m in ("PUT", "PATCH", "DELETE", "POST", "GET") if m not in allowed)
    concrete = path.format(**{seg[1:-1]: str(uuid.uuid4()) for seg in path.split("/") if seg.startswith("{")})
    prefix = "/mistralai" if dialect == "lowcode" else ""
    headers, query = credentials(dialect, env.token)
    r = env.client.request(method, prefix + concrete, headers=headers, params=query)
    assert_error(r, dialect, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed
