"""Fine-tuning jobs over HTTP in both dialects, run by the embedded job runner on the fake trainers: upload → create →
VALIDATED → start → SUCCESS (the model listed in /v1/models), auto_start, dry runs, validation failures with line
numbers, cancel mid-run, classifier jobs, isolation, and bad inputs in each dialect's error shape."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from db_backends import app_database_url
from dialect_support import data, error
from fine_tuning_support import CORPUS, chat_line, classifier_line, fake_merge, jsonl
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.fake import FakeClassifierTrainer, FakeTrainer
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.fine_tuning import TERMINAL_STATUSES
from mistral_gateway.services.container import build_services
from training_support import tiny_tokenizer

DIALECTS = ("native", "lowcode")
TARGETS = [{"name": "sentiment", "labels": ["positive", "negative"], "loss_function": "single_class"}]


@dataclass
class Api:
    client: TestClient
    dialect: str
    token: str

    def __call__(self, method: str, path: str, *, params: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        if self.dialect == "native":
            return self.client.request(method, "/v1" + path, params=params, headers={
                "Authorization": f"Bearer {self.token}"}, **kw)
        return self.client.request(method, "/mistralai/v1" + path, params={**(params or {}), "api_token": self.token},
                                   **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        return data(self(method, path, **kw), self.dialect)

    def fails(self, status: int, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return error(self(method, path, **kw), self.dialect, status)

    def upload(self, content: bytes, name: str = "train.jsonl") -> str:
        return self.ok("POST", "/files", files={"file": (name, content)}, data={"purpose": "fine-tune"})["id"]  # type: ignore[no-any-return]

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {"model": "ministral-3b-latest", "hyperparameters": {"training_steps": 12}, **fields}
        body.setdefault("training_files", [{"file_id": self.upload(jsonl(*[chat_line()] * 8)), "weight": 1}])
        return self.ok("POST", "/fine_tuning/jobs", json=body)  # type: ignore[no-any-return]

    def wait(self, job_id: str, until: set[str] | frozenset[str] = TERMINAL_STATUSES) -> dict[str, Any]:
        """Poll the job until its status is one of ``until`` (a bounded wait, not a timing check)."""
        for _ in range(1200):
            job = self.ok("GET", f"/fine_tuning/jobs/{job_id}")
            if job["status"] in until:
                return job  # type: ignore[no-any-return]
            time.sleep(0.025)
        raise AssertionError(f"job {job_id} still {job['status']}")


@dataclass
class Env:
    client: TestClient
    tokens: dict[str, str]
    trainer: FakeTrainer

    def api(self, dialect: str, workspace: str = "a") -> Api:
        return Api(self.client, dialect, self.tokens[workspace])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_backend: str, request: pytest.FixtureRequest,
        ) -> Iterator[Env]:
    with app_database_url(module_backend, request) as url:
        yield from _env(tmp_path_factory.mktemp("ft"), url)


def _env(root: Path, database_url: str | None) -> Iterator[Env]:
    gguf = root / "base.gguf"
    gguf.write_bytes(b"GGUF" + bytes(4096))
    settings = Settings(data_dir=root / "data", database_url=database_url, bootstrap_dev_token=False,
                        job_poll_seconds=0.05,
                        fine_tuning_poll_seconds=0.02, models=[
                            ModelEntry(id="small-chat", aliases=["ministral-3b-latest"], engine="fake", path=str(gguf),
                                       capabilities=["completion_chat"], max_context_length=2048),
                            ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[])])
    services = build_services(settings)
    assert services.fine_tuning is not None
    trainer = FakeTrainer()
    deps = services.fine_tuning.deps
    deps.trainer, deps.merge = trainer, fake_merge
    tokenizer = tiny_tokenizer(CORPUS)  # once: transformers' lazy imports are not thread-safe
    deps.tokenizer = lambda path: tokenizer
    services.classifier_trainer = FakeClassifierTrainer()
    tokens = {ws: services.tokens.create(ws, workspace=ws)[0] for ws in ("a", "b")}
    with TestClient(create_app(services=services)) as client:
        yield Env(client, tokens, trainer)
    services.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_upload_create_validate_start_succeed(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    valid = api.upload(jsonl(chat_line("Where is Quillmar?", "In Zarnovia.")), "valid.jsonl")
    job = api.create(suffix="zarnovia", validation_files=[valid])
    assert job["status"] in ("QUEUED", "VALIDATING", "VALIDATED") and job["job_type"] == "completion"
    assert job["hyperparameters"]["training_steps"] == 12 and job["auto_start"] is False
    validated = api.wait(job["id"], {"VALIDATED", *TERMINAL_STATUSES})
    assert validated["status"] == "VALIDATED" and validated["metadata"]["data_tokens"] > 0
    started = api.ok("POST", f"/fine_tuning/jobs/{job['id']}/start")
    assert started["status"] in ("STARTED", "RUNNING", "SUCCESS")
    done = api.wait(job["id"])
    assert done["status"] == "SUCCESS"
    assert [c["step_number"] for c in done["checkpoints"]] == [12, 10]
    assert done["checkpoints"][0]["metrics"]["valid_loss"] is not None
    model_id = done["fine_tuned_model"]
    assert re.fullmatch(r"ft:ministral-3b-latest:zarnovia:\d{8}:[0-9a-f]{8}", model_id)
    spec = next(s for s in env.trainer.started if Path(s.run_dir).name == job["id"])
    assert Path(spec.run_dir).parent.name == "fine_tuning" and Path(spec.cache_dir).name == "bases"
    assert [e["data"]["status"] for e in reversed(done["events"]) if e["name"] == "status-updated"][-3:] == [
        "STARTED", "RUNNING", "SUCCESS"]
    card = api.ok("GET", f"/models/{model_id}")
    assert (card["type"], card["root"], card["job"]) == ("fine-tuned", "ministral-3b-latest", job["id"])
    listed = api.ok("GET", "/fine_tuning/jobs", params={"suffix": "zarnovia", "status": "SUCCESS"})
    assert job["id"] in [j["id"] for j in listed["data"]] and listed["object"] == "list"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_auto_start_and_bare_file_ids(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    job = api.create(auto_start=True, training_files=[api.upload(jsonl(*[chat_line()] * 4))])
    assert api.wait(job["id"])["status"] == "SUCCESS"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dry_run_creates_nothing(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    before = api.ok("GET", "/fine_tuning/jobs")["total"]
    body = {"model": "ministral-3b-latest", "hyperparameters": {"epochs": 3},
            "training_files": [{"file_id": api.upload(jsonl(*[chat_line()] * 8))}]}
    out = api.ok("POST", "/fine_tuning/jobs", params={"dry_run": "true"}, json=body)
    assert out["object"] == "job.metadata" and out["training_steps"] == 6 and out["epochs"] == 3
    assert out["data_tokens"] > 0 and out["cost"] == 0 and out["details"]
    assert api.ok("GET", "/fine_tuning/jobs")["total"] == before


@pytest.mark.parametrize("dialect", DIALECTS)
def test_validation_failure_names_each_line(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    bad = api.upload(jsonl(chat_line(), "{oops", chat_line()), "bad.jsonl")
    done = api.wait(api.create(auto_start=True, training_files=[bad])["id"])
    assert done["status"] == "FAILED_VALIDATION"
    sample = next(e["data"] for e in done["events"] if e["name"] == "invalid-sample")
    assert (sample["filename"], sample["line"]) == ("bad.jsonl", 2)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cancel_a_running_job(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    job = api.create(auto_start=True, hyperparameters={"training_steps": 100_000})
    api.wait(job["id"], {"RUNNING", *TERMINAL_STATUSES})
    cancelled = api.ok("POST", f"/fine_tuning/jobs/{job['id']}/cancel")
    assert cancelled["status"] in ("CANCELLATION_REQUESTED", "CANCELLED")
    done = api.wait(job["id"])
    assert done["status"] == "CANCELLED" and done["fine_tuned_model"] is None
    assert any(Path(s.run_dir).name == job["id"] for s in env.trainer.started)  # it was training


@pytest.mark.parametrize("dialect", DIALECTS)
def test_classifier_job(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    lines = jsonl(classifier_line(), classifier_line("awful movie", "negative"))
    job = api.create(auto_start=True, job_type="classifier", classifier_targets=TARGETS,
                     training_files=[{"file_id": api.upload(lines)}], hyperparameters={"training_steps": 4})
    done = api.wait(job["id"])
    assert done["status"] == "SUCCESS" and done["classifier_targets"] == [{**TARGETS[0], "weight": 1.0}]
    assert done["fine_tuned_model"].startswith("ft:classifier:ministral-3b-latest:")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_errors_in_each_dialect(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    file_id = api.upload(jsonl(chat_line()))
    body = {"model": "ministral-3b-latest", "hyperparameters": {}, "training_files": [{"file_id": file_id}]}
    assert "'nope' cannot be fine-tuned" in api.fails(400, "POST", "/fine_tuning/jobs",
                                                      json={**body, "model": "nope"})["message"]
    assert "repositories" in api.fails(400, "POST", "/fine_tuning/jobs", json={**body, "repositories": [
        {"type": "github", "name": "r", "owner": "o", "token": "t"}]})["message"]
    for bad in ({"suffix": "x" * 19}, {"invalid_sample_skip_percentage": 0.6},
                {"hyperparameters": {"learning_rate": 2}}, {"integrations": [{"project": "p", "api_key": "short"}]}):
        api.fails(422, "POST", "/fine_tuning/jobs", json={**body, **bad})
    job = api.create()
    other = env.api(dialect, "b")
    for method, path in (("GET", ""), ("POST", "/start"), ("POST", "/cancel")):
        other.fails(404, method, f"/fine_tuning/jobs/{job['id']}{path}")
    assert job["id"] not in [j["id"] for j in other.ok("GET", "/fine_tuning/jobs")["data"]]
    api.wait(job["id"], {"VALIDATED", *TERMINAL_STATUSES})
    api.ok("POST", f"/fine_tuning/jobs/{job['id']}/cancel")
    assert "only a VALIDATED job" in api.fails(409, "POST", f"/fine_tuning/jobs/{job['id']}/start")["message"]
    api.fails(422, "GET", "/fine_tuning/jobs", params={"page_size": 0})

