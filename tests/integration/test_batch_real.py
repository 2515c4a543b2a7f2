"""A batch on the real smallest model (SmolLM2-135M as ``ministral-3b-latest``) through a live server and the
official SDK: several lines in flight on the llama.cpp engine, every output line a real completion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import Mistral

from batch_support import wait_done
from mistral_gateway.config import Settings
from mistral_gateway.services.container import Services, build_services
from support import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture
def stack(tmp_path: Path, weights_dir: Path) -> Iterator[tuple[LiveServer, str]]:
    settings = Settings(data_dir=tmp_path / "data", weights_path=weights_dir, bootstrap_dev_token=False)
    services: Services = build_services(settings)
    token, _ = services.tokens.create("real")
    server = LiveServer(services)
    server.start()
    yield server, token
    server.stop()
    services.close()


def test_inline_batch_on_the_real_model(stack: tuple[LiveServer, str]) -> None:
    server, token = stack
    with Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as sdk:
        requests: list[Any] = [{"custom_id": str(i), "body": {
            "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": f"Count to {i + 2}."}]}}
            for i in range(6)]
        job = sdk.batch.jobs.create(endpoint="/v1/chat/completions", model="ministral-3b-latest", requests=requests)
        done = wait_done(lambda i: sdk.batch.jobs.get(job_id=i).model_dump(), job.id, rounds=2400)
    assert done["status"] == "SUCCESS" and done["succeeded_requests"] == 6, done["errors"]
    assert sorted(o["custom_id"] for o in done["outputs"]) == [str(i) for i in range(6)]
    for line in done["outputs"]:
        body = line["response"]["body"]
        assert body["choices"][0]["message"]["content"].strip()
        assert 0 < body["usage"]["completion_tokens"] <= 4
