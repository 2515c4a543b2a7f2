"""The fine-tuning calls of the official SDK's 2.x line (3.x dropped them; the spec keeps them), run against a live
server with only ``server_url`` changed: files upload, jobs create / get / list / start / cancel, the classifier
job the SDK's example sends (no classifier_targets), and the fine-tuned model's retrieve / update / archive /
unarchive / delete. The SDK is installed from PyPI into its own virtual environment (it cannot sit beside 3.x);
the trainers are the deterministic fakes (real training is tests/integration/test_fine_tuning_e2e.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fine_tuning_support import CORPUS, chat_line, classifier_line, fake_merge, jsonl
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.fake import FakeClassifierTrainer, FakeTrainer
from support import serving
from training_support import tiny_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # a pip install and a live server

SDK = "mistralai==2.5.1"  # the 2.x release whose examples call client.fine_tuning.jobs

SCRIPT = r'''
import json, sys, time
from mistralai.client import Mistral

base_url, token, train_path, classes_path = sys.argv[1:5]
client = Mistral(api_key=token, server_url=base_url)
out = {}

def wait(job_id, until):
    for _ in range(600):
        job = client.fine_tuning.jobs.get(job_id=job_id)
        if job.status in until:
            return job
        time.sleep(0.1)
    raise SystemExit(f"job {job_id} stuck at {job.status}")

with open(train_path, "rb") as f:
    training = client.files.upload(file={"file_name": "train.jsonl", "content": f})
created = client.fine_tuning.jobs.create(
    model="ministral-3b-latest", training_files=[{"file_id": training.id, "weight": 1}], suffix="sdk",
    hyperparameters={"training_steps": 4, "learning_rate": 0.0001}, auto_start=False)
out["created"] = created.status
validated = wait(created.id, ("VALIDATED", "FAILED_VALIDATION"))
out["validated"] = validated.status
out["data_tokens"] = validated.metadata.data_tokens if validated.metadata else None
started = client.fine_tuning.jobs.start(job_id=created.id)
out["started"] = started.status
done = wait(created.id, ("SUCCESS", "FAILED", "CANCELLED"))
out["done"] = done.status
out["checkpoints"] = [c.step_number for c in done.checkpoints]
out["listed"] = [j.id for j in client.fine_tuning.jobs.list(page=0, page_size=5).data]
out["job_id"] = created.id

model_id = done.fine_tuned_model
out["model_id"] = model_id
card = client.models.retrieve(model_id=model_id)
out["card"] = [card.type, card.root, card.job]
updated = client.models.update(model_id=model_id, name="sdk model", description="from the 2.x SDK")
out["updated"] = [updated.name, updated.description, updated.model_type]
out["archived"] = client.models.archive(model_id=model_id).archived
out["unarchived"] = client.models.unarchive(model_id=model_id).archived
out["deleted"] = client.models.delete(model_id=model_id).deleted

another = client.fine_tuning.jobs.create(
    model="ministral-3b-latest", training_files=[{"file_id": training.id}],
    hyperparameters={"training_steps": 4}, auto_start=False)
out["cancelled"] = client.fine_tuning.jobs.cancel(job_id=another.id).status

with open(classes_path, "rb") as f:
    classes = client.files.upload(file={"file_name": "classes.jsonl", "content": f}, purpose="fine-tune")
job = client.fine_tuning.jobs.create(
    model="ministral-3b-latest", job_type="classifier", training_files=[{"file_id": classes.id}],
    hyperparameters={"learning_rate": 0.0001}, auto_start=True)
classifier = wait(job.id, ("SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"))
out["classifier"] = [classifier.status, type(classifier).__name__,
                     [(t.name, t.labels) for t in classifier.classifier_targets]]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def sdk2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("sdk2") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", SDK], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"pip install {SDK} failed: {done.stderr[-2000:]}"
    return python


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings = Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, fine_tuning_poll_seconds=0.05,
                        models=[ModelEntry(id="smollm2", aliases=["ministral-3b-latest"],
                                           path=str(tmp_path / "b.gguf")),
                                ModelEntry(id="embed", aliases=["mistral-embed"], engine="fake", capabilities=[])])
    (tmp_path / "b.gguf").write_bytes(b"GGUF base")
    with serving(settings) as (server, services, token):
        deps = services.fine_tuning.deps  # type: ignore[union-attr]
        deps.trainer, deps.merge = FakeTrainer(), fake_merge
        deps.tokenizer = lambda gguf: tiny_tokenizer(CORPUS)
        services.classifier_trainer = FakeClassifierTrainer()
        yield server.base_url, token


def test_the_2x_sdk_runs_the_fine_tuning_lifecycle(sdk2: Path, live: tuple[str, str], tmp_path: Path) -> None:
    base_url, token = live
    train = tmp_path / "train.jsonl"
    train.write_bytes(jsonl(*[chat_line() for _ in range(4)]))
    classes = tmp_path / "classes.jsonl"
    classes.write_bytes(jsonl(classifier_line(), classifier_line("awful movie", "negative")))
    script = tmp_path / "sdk2_script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    done = subprocess.run([str(sdk2), str(script), base_url, token, str(train), str(classes)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["created"], out["validated"], out["started"], out["done"]) == (
        "QUEUED", "VALIDATED", "STARTED", "SUCCESS")
    assert out["data_tokens"] > 0 and out["checkpoints"] and out["job_id"] in out["listed"]
    assert out["model_id"].startswith("ft:ministral-3b-latest:sdk:")
    assert out["card"] == ["fine-tuned", "ministral-3b-latest", out["job_id"]]
    assert out["updated"] == ["sdk model", "from the 2.x SDK", "completion"]
    assert (out["archived"], out["unarchived"], out["deleted"]) == (True, False, True)
    assert out["cancelled"] in ("CANCELLED", "CANCELLATION_REQUESTED")
    status, kind, targets = out["classifier"]
    assert (status, kind) == ("SUCCESS", "ClassifierFineTuningJobDetails")
    assert targets == [["sentiment", ["negative", "positive"]]]
