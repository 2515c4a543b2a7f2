"""The official SDK (mistralai 3.7.0) against a live server: batch jobs end to end with the fake engine (upload,
create, poll, download the output and error files, every line checked; inline requests; list; cancel)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError

from batch_support import hold, wait_done
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.services.container import Services

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", aliases=["ministral-3b-latest"], engine="fake", capabilities=["completion_chat"]),
        ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", kind="embedding", capabilities=[]),
    ])


@pytest.fixture
def sdk(live_server: Any, token: str, services: Services) -> Iterator[Mistral]:
    with Mistral(api_key=token, server_url=live_server.base_url, timeout_ms=20_000) as client:
        yield client


def poll(sdk: Mistral, job_id: str, inline: bool = False) -> Any:
    return wait_done(lambda i: sdk.batch.jobs.get(job_id=i, inline=inline).model_dump(), job_id)


def download(sdk: Mistral, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sdk.files.download(file_id=file_id).read().splitlines()]


def test_file_batch_end_to_end(sdk: Mistral) -> None:
    lines = [{"custom_id": f"q{i}", "body": {"max_tokens": 3, "messages": [{"role": "user", "content": f"n {i}"}]}}
             for i in range(6)]
    content = "".join(json.dumps(line) + "\n" for line in lines) + "not json\n"
    content += json.dumps({"custom_id": "neg", "body": {"max_tokens": -1, "messages": []}}) + "\n"
    uploaded = sdk.files.upload(file={"file_name": "in.jsonl", "content": content.encode()}, purpose="batch")
    job = sdk.batch.jobs.create(input_files=[uploaded.id], endpoint="/v1/chat/completions",
                                model="ministral-3b-latest", metadata={"run": "sdk"}, timeout_hours=2)
    assert job.status in ("QUEUED", "RUNNING") and job.total_requests == 8
    done = poll(sdk, job.id)
    assert done["status"] == "SUCCESS"
    assert (done["succeeded_requests"], done["failed_requests"], done["completed_requests"]) == (6, 2, 8)
    output = download(sdk, done["output_file"])
    assert sorted(o["custom_id"] for o in output) == [f"q{i}" for i in range(6)]
    for line in output:
        assert line["id"].startswith("batch-") and line["error"] is None
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and body["object"] == "chat.completion"
        assert body["model"] == "ministral-3b-latest" and body["usage"]["completion_tokens"] <= 3
    errors = download(sdk, done["error_file"])
    assert [e["custom_id"] for e in errors] == [None, "neg"]
    assert errors[0]["error"]["code"] == "INVALID_BATCH_LINE" and errors[0]["response"] is None
    assert errors[1]["response"]["status_code"] == 422
    listed = sdk.batch.jobs.list(status=["SUCCESS"], model="ministral-3b-latest")
    assert [j.id for j in listed.data] == [job.id] and listed.total == 1
    assert sdk.batch.jobs.list(metadata={"run": "sdk"}).total == 1
    assert sdk.batch.jobs.list(metadata={"run": "other"}).total == 0


def test_inline_requests_embeddings(sdk: Mistral) -> None:
    job = sdk.batch.jobs.create(endpoint="/v1/embeddings", model="mistral-embed",
                                requests=[{"custom_id": str(i), "body": {"input": [f"text {i}"]}} for i in range(3)])
    done = poll(sdk, job.id, inline=True)
    assert done["status"] == "SUCCESS" and done["succeeded_requests"] == 3
    assert sorted(o["custom_id"] for o in done["outputs"]) == ["0", "1", "2"]
    assert all(len(o["response"]["body"]["data"][0]["embedding"]) > 0 for o in done["outputs"])


def test_unknown_model_and_cancel(sdk: Mistral, services: Services) -> None:
    with pytest.raises(MistralError) as exc:
        sdk.batch.jobs.create(endpoint="/v1/chat/completions", model="nope", requests=[{"body": {}}])
    assert exc.value.status_code == 400
    hold(services)  # stays queued
    job = sdk.batch.jobs.create(endpoint="/v1/chat/completions", model="ministral-3b-latest",
                                requests=[{"body": {"messages": [{"role": "user", "content": "x"}]}}])
    assert sdk.batch.jobs.cancel(job_id=job.id).status == "CANCELLED"
    assert sdk.batch.jobs.get(job_id=job.id).status == "CANCELLED"
