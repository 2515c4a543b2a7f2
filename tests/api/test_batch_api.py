"""Batch jobs over HTTP in both dialects with the fake engine: create, get, list, cancel, isolation, 400s."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from batch_support import hold, wait_done
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services

FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"
pytestmark = pytest.mark.usefixtures("database_backend")  # batch, file and usage rows: SQLite and PostgreSQL

CHAT = {"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 4}


@pytest.fixture
def env(tmp_path: Path, app_database: str | None) -> Iterator[tuple[TestClient, Services, str]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=app_database, bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake",
                   capabilities=["completion_chat", "completion_fim"], fim_template=FIM),
        ModelEntry(id="fake-plain", engine="fake", capabilities=["completion_chat"]),
    ])
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield client, services, token
    services.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(client: TestClient, token: str, content: bytes, purpose: str = "batch") -> str:
    r = client.post("/v1/files", headers=auth(token), data={"purpose": purpose},
                    files={"file": ("in.jsonl", io.BytesIO(content), "application/jsonl")})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def lines(client: TestClient, token: str, file_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/files/{file_id}/content", headers=auth(token))
    assert r.status_code == 200
    return [json.loads(line) for line in r.content.splitlines()]


def test_file_batch_with_a_malformed_line(env: tuple[TestClient, Services, str]) -> None:
    client, _services, token = env
    content = b"".join(json.dumps({"custom_id": str(i), "body": CHAT}).encode() + b"\n" for i in range(5))
    content += b"{not json\n" + json.dumps({"custom_id": "nobody"}).encode() + b"\n"
    file_id = upload(client, token, content)
    r = client.post("/v1/batch/jobs", headers=auth(token), json={
        "input_files": [file_id], "endpoint": "/v1/chat/completions", "model": "mistral-small-latest",
        "metadata": {"run": "a"}})
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["status"] in ("QUEUED", "RUNNING") and created["total_requests"] == 7
    assert created["object"] == "batch" and created["input_files"] == [file_id]
    job = wait_done(lambda i: client.get(f"/v1/batch/jobs/{i}", headers=auth(token)).json(), created["id"])
    assert job["status"] == "SUCCESS"
    assert (job["total_requests"], job["completed_requests"], job["succeeded_requests"],
            job["failed_requests"]) == (7, 7, 5, 2)
    assert job["started_at"] >= job["created_at"] and job["completed_at"] >= job["started_at"]
    assert sum(e["count"] for e in job["errors"]) == 2
    out = lines(client, token, job["output_file"])
    assert sorted(line["custom_id"] for line in out) == ["0", "1", "2", "3", "4"]
    prefix = "batch-" + created["id"].replace("-", "")[:8] + "-"
    for line in out:
        assert line["id"].startswith(prefix) and line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["body"]["choices"][0]["message"]["content"]
    errors = lines(client, token, job["error_file"])
    assert [e["custom_id"] for e in errors] == [None, "nobody"]
    assert all(e["error"]["code"] == "INVALID_BATCH_LINE" for e in errors)
    meta = client.get(f"/v1/files/{job['output_file']}", headers=auth(token)).json()
    assert (meta["purpose"], meta["sample_type"], meta["source"]) == ("batch", "batch_result", "mistral")
    meta = client.get(f"/v1/files/{job['error_file']}", headers=auth(token)).json()
    assert meta["sample_type"] == "batch_error"
    inline = client.get(f"/v1/batch/jobs/{job['id']}", params={"inline": "true"}, headers=auth(token)).json()
    assert len(inline["outputs"]) == 7


def test_inline_requests_and_engine_errors(env: tuple[TestClient, Services, str]) -> None:
    client, _services, token = env
    requests = [{"custom_id": "ok", "body": CHAT},
                {"custom_id": "bad", "body": {"messages": [{"role": "user", "content": "x"}], "max_tokens": -3}},
                {"custom_id": "fim", "body": {"prompt": "def f(", "max_tokens": 3}}]
    r = client.post("/mistralai/v1/batch/jobs", params={"api_token": token}, json={
        "requests": requests, "endpoint": "/v1/chat/completions", "model": "fake-chat"})
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["id"]
    job = wait_done(lambda i: client.get(f"/mistralai/v1/batch/jobs/{i}", params={"api_token": token})
                    .json()["data"], job_id)
    assert (job["succeeded_requests"], job["failed_requests"]) == (1, 2)
    by_id = {o["custom_id"]: o for o in job["outputs"]}
    assert by_id["ok"]["response"]["status_code"] == 200
    assert by_id["bad"]["response"]["status_code"] == 422 and "detail" in by_id["bad"]["response"]["body"]
    assert by_id["fim"]["response"]["status_code"] == 422  # a FIM body is no chat request
    old = client.get("/mistralai/v1/batch/jobs/job_id", params={"api_token": token, "job_id": job_id})
    assert old.status_code == 200 and old.json()["data"]["id"] == job_id


def test_fim_and_per_line_models(env: tuple[TestClient, Services, str]) -> None:
    client, _services, token = env
    requests = [{"custom_id": "a", "body": {"model": "fake-chat", "prompt": "def f(", "max_tokens": 3}},
                {"custom_id": "b", "body": {"prompt": "x", "max_tokens": 3}},
                {"custom_id": "c", "body": {"model": "fake-plain", "prompt": "x", "max_tokens": 3}}]
    r = client.post("/v1/batch/jobs", headers=auth(token), json={"requests": requests,
                                                                  "endpoint": "/v1/fim/completions"})
    job = wait_done(lambda i: client.get(f"/v1/batch/jobs/{i}", headers=auth(token)).json(), r.json()["id"])
    by_id = {o["custom_id"]: o for o in job["outputs"]}
    assert by_id["a"]["response"]["status_code"] == 200
    assert by_id["b"]["error"]["code"] == "INVALID_BATCH_LINE"  # no model anywhere
    assert by_id["c"]["response"]["status_code"] == 400  # that model does no FIM


@pytest.mark.parametrize(("body", "param"), [
    ({"endpoint": "/v1/nope", "requests": [{"body": CHAT}], "model": "fake-chat"}, "endpoint"),
    ({"endpoint": "/v1/ocr", "requests": [{"body": CHAT}], "model": "fake-chat"}, "model"),  # no OCR
    ({"endpoint": "/v1/moderations", "requests": [{"body": CHAT}], "model": "fake-chat"}, "model"),  # no moderation
    ({"endpoint": "/v1/chat/completions", "requests": [{"body": CHAT}], "model": "no-such-model"}, "model"),
    ({"endpoint": "/v1/fim/completions", "requests": [{"body": CHAT}], "model": "fake-plain"}, "model"),
    ({"endpoint": "/v1/chat/completions", "model": "fake-chat"}, "input_files"),
    ({"endpoint": "/v1/chat/completions", "model": "fake-chat", "requests": [{"body": CHAT}],
      "input_files": ["3fa85f64-5717-4562-b3fc-2c963f66afa6"]}, "input_files"),
    ({"endpoint": "/v1/chat/completions", "model": "fake-chat",
      "input_files": ["3fa85f64-5717-4562-b3fc-2c963f66afa6"]}, "input_files"),
])
def test_bad_creation_is_400(env: tuple[TestClient, Services, str], body: dict[str, Any], param: str) -> None:
    client, _, token = env
    r = client.post("/v1/batch/jobs", headers=auth(token), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["param"] == param and r.json()["object"] == "error"
    r = client.post("/mistralai/v1/batch/jobs", params={"api_token": token}, json=body)
    assert r.status_code == 400 and r.json()["data"]["error"]["param"] == param


def test_input_file_with_another_purpose_is_400(env: tuple[TestClient, Services, str]) -> None:
    client, _, token = env
    file_id = upload(client, token, b'{"messages": [{"role": "user", "content": "a"}]}\n', purpose="fine-tune")
    r = client.post("/v1/batch/jobs", headers=auth(token), json={
        "input_files": [file_id], "endpoint": "/v1/chat/completions", "model": "fake-chat"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_INPUT_FILE"


@pytest.mark.parametrize("body", [
    {"endpoint": "/v1/chat/completions", "requests": [{"body": CHAT}] * 10_001},
    {"endpoint": "/v1/chat/completions", "requests": [{"body": CHAT}], "metadata": {"k" * 33: "v"}},
    {"endpoint": "/v1/chat/completions", "requests": [{"body": CHAT}], "metadata": {"k": "v" * 513}},
    {"endpoint": "/v1/chat/completions", "requests": [{"body": CHAT}], "timeout_hours": 0},
    {"endpoint": "/v1/chat/completions", "requests": []},
])
def test_out_of_range_is_422(env: tuple[TestClient, Services, str], body: dict[str, Any]) -> None:
    client, _, token = env
    assert client.post("/v1/batch/jobs", headers=auth(token), json=body).status_code == 422


def test_list_filters_pagination_and_isolation(env: tuple[TestClient, Services, str]) -> None:
    client, services, token = env
    hold(services)  # the jobs stay QUEUED
    other, _ = services.tokens.create("o", workspace="other")
    mate, _ = services.tokens.create("m")  # same workspace, another token
    ids = []
    for i, (tok, model) in enumerate([(token, "fake-chat"), (token, "fake-plain"), (mate, "fake-chat")]):
        r = client.post("/v1/batch/jobs", headers=auth(tok), json={
            "requests": [{"body": CHAT}], "endpoint": "/v1/chat/completions", "model": model,
            "metadata": {"i": str(i)}})
        ids.append(r.json()["id"])
    cancelled = client.post(f"/v1/batch/jobs/{ids[1]}/cancel", headers=auth(token)).json()
    assert cancelled["status"] == "CANCELLED"  # never started: nothing to wait for

    def listed(tok: str = token, **params: Any) -> dict[str, Any]:
        r = client.get("/v1/batch/jobs", headers=auth(tok), params=params)
        assert r.status_code == 200, r.text
        return r.json()

    everything = listed()
    assert everything["total"] == 3 and everything["object"] == "list"
    assert {j["id"] for j in everything["data"]} == set(ids)
    assert [j["id"] for j in listed(order_by="created")["data"]] == [
        j["id"] for j in reversed(everything["data"])]
    assert {j["id"] for j in listed(model="fake-chat")["data"]} == {ids[0], ids[2]}
    assert [j["id"] for j in listed(status="CANCELLED")["data"]] == [ids[1]]
    assert listed(status=["QUEUED", "CANCELLED"])["total"] == 3
    assert [j["id"] for j in listed(metadata='{"i":"2"}')["data"]] == [ids[2]]
    assert {j["id"] for j in listed(created_by_me="true")["data"]} == {ids[0], ids[1]}
    page = listed(page=1, page_size=2)
    assert page["total"] == 3 and len(page["data"]) == 1
    assert listed(created_after="2100-01-01T00:00:00Z")["total"] == 0
    assert listed(other)["total"] == 0
    assert client.get(f"/v1/batch/jobs/{ids[0]}", headers=auth(other)).status_code == 404
    assert client.post(f"/v1/batch/jobs/{ids[0]}/cancel", headers=auth(other)).status_code == 404
    assert client.get("/v1/batch/jobs", headers=auth(token), params={"metadata": "[1]"}).status_code == 400
    assert client.get("/v1/batch/jobs", headers=auth(token), params={"status": "NOPE"}).status_code == 422
    wrapped = client.get("/mistralai/v1/batch/jobs", params={"api_token": token}).json()
    assert wrapped["data"]["total"] == 3


def test_metadata_filters_with_any_key_and_pages(env: tuple[TestClient, Services, str]) -> None:
    client, _, token = env
    keys = ['a"b', "ü k", "$[0]", "a.b"]
    for key in keys:
        for run in ("x", "y"):
            r = client.post("/v1/batch/jobs", headers=auth(token), json={
                "requests": [{"body": CHAT}], "endpoint": "/v1/chat/completions", "model": "fake-chat",
                "metadata": {key: run, "all": "1"}})
            assert r.status_code == 200
    for key in keys:
        r = client.get("/v1/batch/jobs", headers=auth(token), params={key: "x"})
        assert r.json()["total"] == 1 and r.json()["data"][0]["metadata"][key] == "x"
    first = client.get("/v1/batch/jobs", headers=auth(token), params={"all": "1", "page_size": 5}).json()
    second = client.get("/v1/batch/jobs", headers=auth(token), params={"all": "1", "page_size": 5, "page": 1}).json()
    assert first["total"] == second["total"] == 8 and (len(first["data"]), len(second["data"])) == (5, 3)
    assert not {j["id"] for j in first["data"]} & {j["id"] for j in second["data"]}
    too_long = client.get("/v1/batch/jobs", headers=auth(token), params={"k" * 33: "x"})
    assert too_long.status_code == 400 and too_long.json()["param"] == "metadata"


def make_agent(client: TestClient, token: str, **fields: Any) -> str:
    r = client.post("/v1/agents", headers=auth(token), json={"model": "fake-chat", "name": "pirate",
                                                               "instructions": "Answer as a pirate.", **fields})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_agent_jobs_run_their_lines_as_agent_completions(env: tuple[TestClient, Services, str]) -> None:
    client, services, token = env
    agent_id = make_agent(client, token)
    line = {"messages": [{"role": "user", "content": "where is the treasure"}], "max_tokens": 12, "random_seed": 7}
    requests = [{"custom_id": "plain", "body": line},
                {"custom_id": "named", "body": {**line, "model": "fake-plain"}},  # the agent's model serves it
                {"custom_id": "bad", "body": {**line, "max_tokens": -1}}]
    r = client.post("/v1/batch/jobs", headers=auth(token), json={
        "requests": requests, "endpoint": "/v1/chat/completions", "agent_id": agent_id})
    assert r.status_code == 200, r.text
    assert r.json()["agent_id"] == agent_id and r.json()["model"] is None
    job = wait_done(lambda i: client.get(f"/v1/batch/jobs/{i}", headers=auth(token)).json(), r.json()["id"])
    assert (job["succeeded_requests"], job["failed_requests"]) == (2, 1)
    by_id = {o["custom_id"]: o["response"] for o in job["outputs"]}
    assert by_id["bad"]["status_code"] == 422
    # the same body as an agent completion over HTTP answers the same (the fake engine is deterministic), and the
    # agent's instructions make it differ from a bare chat completion of those messages
    direct = client.post("/v1/agents/completions", headers=auth(token), json={**line, "agent_id": agent_id}).json()
    bare = client.post("/v1/chat/completions", headers=auth(token), json={**line, "model": "fake-chat"}).json()
    for custom_id in ("plain", "named"):
        answer = by_id[custom_id]["body"]["choices"][0]["message"]["content"]
        assert answer == direct["choices"][0]["message"]["content"] != bare["choices"][0]["message"]["content"]
        assert by_id[custom_id]["body"]["model"] == direct["model"]
    listed = client.get("/v1/batch/jobs", headers=auth(token), params={"agent_id": agent_id}).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    hold(services)
    other = client.post("/mistralai/v1/batch/jobs", params={"api_token": token}, json={
        "requests": [{"body": line}], "endpoint": "/v1/chat/completions", "agent_id": agent_id})
    assert other.status_code == 200 and other.json()["data"]["agent_id"] == agent_id


def test_agent_job_creation_errors(env: tuple[TestClient, Services, str]) -> None:
    client, services, token = env
    agent_id = make_agent(client, token)
    outsider, _ = services.tokens.create("o", workspace="elsewhere")
    base = {"requests": [{"body": CHAT}], "endpoint": "/v1/chat/completions"}
    cases = [
        (token, {**base, "agent_id": agent_id, "model": "fake-chat"}, "agent_id", "INVALID_BATCH_INPUT"),
        (token, {**base, "agent_id": agent_id, "endpoint": "/v1/fim/completions"}, "endpoint",
         "UNSUPPORTED_ENDPOINT"),
        (token, {**base, "agent_id": "ag_" + "0" * 32}, "agent_id", "AGENT_NOT_FOUND"),
        # another workspace's agent is not there
        (outsider, {**base, "agent_id": agent_id}, "agent_id", "AGENT_NOT_FOUND"),
    ]
    for tok, body, param, code in cases:
        r = client.post("/v1/batch/jobs", headers=auth(tok), json=body)
        assert r.status_code == 400, r.text
        assert (r.json()["param"], r.json()["code"]) == (param, code)
    assert client.get("/v1/batch/jobs", headers=auth(token)).json()["total"] == 0  # nothing was created
