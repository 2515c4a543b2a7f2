"""A classifier fine-tuning job for real, through the HTTP API: generated lines are uploaded, a job is created as the
SDK's classifier example creates it (``job_type: classifier``, no classifier_targets: they are read from the lines),
the real trainer fits a head over MiniLM in its worker process, and the ``ft:classifier:`` model it registers answers
``/v1/classifications`` (LowCodeAPI dialect) and ``/v1/chat/classifications`` (native) on held-out lines."""

from __future__ import annotations

import json
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
from mistral_gateway.training.classifier_sample import sample_lines

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the real encoder, in a training worker and in the server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[TestClient, str]]:
    root = tmp_path_factory.mktemp("classifier-job")
    settings = Settings(data_dir=root / "data", weights_path=weights_dir, bootstrap_dev_token=False,
                        fine_tuning_poll_seconds=0.5, models=[m for m in default_models() if m.id in (
                            "smollm2-135m-instruct", "all-minilm-l6-v2")])
    services = build_services(settings)
    token = services.tokens.create("e2e", scopes=["*"])[0]
    with TestClient(create_app(services=services)) as client:
        yield client, token
    services.close()


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.mark.timeout(900)
def test_a_classifier_job_serves_held_out_classifications(server: tuple[TestClient, str]) -> None:
    client, token = server
    auth = {"Authorization": f"Bearer {token}"}

    def upload(lines: list[dict[str, Any]], name: str) -> str:
        r = client.post("/v1/files", headers=auth, files={"file": (name, jsonl(lines))}, data={"purpose": "fine-tune"})
        assert r.status_code == 200, r.text
        return r.json()["id"]  # type: ignore[no-any-return]

    train, valid = upload(sample_lines(150, seed=1), "train.jsonl"), upload(sample_lines(30, seed=2), "valid.jsonl")
    r = client.post("/v1/fine_tuning/jobs", headers=auth, json={
        "model": "ministral-3b-latest", "job_type": "classifier", "training_files": [{"file_id": train}],
        "validation_files": [valid], "hyperparameters": {"learning_rate": 0.0001}, "auto_start": True})
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    while (job := client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth).json())["status"] not in \
            TERMINAL_STATUSES:  # the test's timeout bounds the wait
        time.sleep(1)
    assert job["status"] == "SUCCESS", job["events"][:3]
    targets = {t["name"]: (t["labels"], t["loss_function"]) for t in job["classifier_targets"]}
    assert targets == {"topic": (["cooking", "finance", "sports"], "single_class"),
                       "mentions": (["animal", "color"], "multi_class")}
    assert job["checkpoints"][0]["metrics"]["targets"]["topic"]["valid_accuracy"] >= 0.9
    model = job["fine_tuned_model"]
    assert model.startswith("ft:classifier:ministral-3b-latest:")

    heldout = sample_lines(60, seed=3, heldout=True)
    r = client.post("/mistralai/v1/classifications", params={"api_token": token},
                    json={"model": model, "input": [line["text"] for line in heldout]})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert len(results) == len(heldout)
    right = 0
    for line, result in zip(heldout, results, strict=True):
        scores = result["topic"]["scores"]
        assert abs(sum(scores.values()) - 1) < 1e-3  # single-label: the scores spread 1.0 over the labels
        right += max(scores, key=scores.get) == line["labels"]["topic"]
    assert right / len(heldout) >= 0.9, f"{right} of {len(heldout)} held-out topics right"

    line = heldout[0]
    r = client.post("/v1/chat/classifications", headers=auth, json={
        "model": model, "input": [{"messages": [{"role": "user", "content": line["text"]}]}]})
    assert r.status_code == 200, r.text
    assert set(r.json()["results"][0]) == {"topic", "mentions"}
