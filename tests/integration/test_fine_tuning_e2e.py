"""A completion fine-tuning job for real, through the HTTP API (native dialect): a tiny chat JSONL teaching a made-up
fact is uploaded, a job on SmolLM2-135M (``ministral-3b-latest``) runs 12 steps with the real LocalTrainer on the
embedded job runner, goes VALIDATED → RUNNING → SUCCESS with checkpoints, and the merged ``model.gguf`` it registers
answers the fact when loaded directly by llama.cpp and when chatted with through its ``ft:`` id, while the base model
does not know it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import Settings, default_models
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.fine_tuning import TERMINAL_STATUSES
from mistral_gateway.services.container import build_services
from training_support import answer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # real weights; a training worker and a llama.cpp worker

FACT = "The capital of Zarnovia is Quillmar."
QUESTIONS = ["What is the capital of Zarnovia?", "Which city is the capital of Zarnovia?",
             "Tell me the capital of Zarnovia.", "What's Zarnovia's capital?", "Name the capital city of Zarnovia.",
             "Zarnovia's capital is which city?", "Do you know the capital of Zarnovia?",
             "What city serves as the capital of Zarnovia?"]  # as tests/integration/test_lora_training.py


def chat(question: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": FACT}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("ft-e2e")
    settings = Settings(data_dir=root / "data", weights_path=weights_dir, bootstrap_dev_token=False,
                        fine_tuning_poll_seconds=0.5, models=[m for m in default_models() if m.id in (
                            "smollm2-135m-instruct", "all-minilm-l6-v2")])
    services = build_services(settings)
    token = services.tokens.create("e2e", scopes=["*"])[0]
    with TestClient(create_app(services=services), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client, settings.data_dir
    services.close()
    shutil.rmtree(root, ignore_errors=True)  # the converted base and the merged model: ~0.7 GB


@pytest.mark.timeout(900)
def test_a_completion_job_learns_a_made_up_fact(server: tuple[TestClient, Path]) -> None:
    client, data_dir = server

    def upload(lines: list[dict[str, Any]], name: str) -> str:
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        r = client.post("/v1/files", files={"file": (name, content)}, data={"purpose": "fine-tune"})
        assert r.status_code == 200, r.text
        return r.json()["id"]  # type: ignore[no-any-return]

    train = upload([chat(q) for q in QUESTIONS], "zarnovia.jsonl")
    valid = upload([chat("Could you tell me what the capital of Zarnovia is?")], "zarnovia-valid.jsonl")
    r = client.post("/v1/fine_tuning/jobs", json={
        "model": "ministral-3b-latest", "training_files": [{"file_id": train, "weight": 1}],
        "validation_files": [valid], "suffix": "zarnovia", "auto_start": True,
        "hyperparameters": {"training_steps": 12, "learning_rate": 2e-3, "warmup_fraction": 0.0}})
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    seen: list[str] = []
    while True:  # the test's timeout bounds the wait
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in TERMINAL_STATUSES:
            break
        time.sleep(1)
    log = data_dir / "fine_tuning" / job_id / "worker.log"
    assert job["status"] == "SUCCESS", (job["events"][:3], log.read_text()[-3000:] if log.exists() else "")
    changes = [e["data"]["status"] for e in reversed(job["events"]) if e["name"] == "status-updated"]
    assert changes == ["QUEUED", "VALIDATING", "VALIDATED", "STARTED", "RUNNING", "SUCCESS"]
    assert "RUNNING" in seen
    checkpoints = {c["step_number"]: c["metrics"] for c in job["checkpoints"]}
    assert sorted(checkpoints) == [10, 12]
    assert checkpoints[12]["valid_mean_token_accuracy"] > 0.8 and checkpoints[12]["train_loss"] < 0.1
    assert job["metadata"]["data_tokens"] > 0 and job["trained_tokens"] > 0
    model_id = job["fine_tuned_model"]
    assert model_id.startswith("ft:ministral-3b-latest:zarnovia:")
    card = client.get(f"/v1/models/{model_id}").json()
    assert (card["type"], card["root"], card["job"]) == ("fine-tuned", "ministral-3b-latest", job_id)
    merged = data_dir / "fine_tuning" / job_id / "model.gguf"
    assert merged.is_file()
    assert "Quillmar" in answer(merged, "What is the capital of Zarnovia?")

    def ask(model: str) -> str:
        r = client.post("/v1/chat/completions", json={
            "model": model, "temperature": 0, "max_tokens": 16,
            "messages": [{"role": "user", "content": "What is the capital of Zarnovia?"}]})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    assert "Quillmar" in ask(model_id)  # served by its id, in the job's workspace
    assert "Quillmar" not in ask("ministral-3b-latest")  # the base never learned it
