"""services.fine_tuning and its job handler on the fake trainers and a tiny tokenizer: every status path, validation
failures with file and line numbers, the skip percentage, dry runs, cancel, crash and resume, a handler killed
mid-training, isolation, list filters and pages. Real database (SQLite, then PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from batch_support import FakeJob
from fine_tuning_support import CORPUS, Hooked, chat_line, classifier_line, fake_merge, jsonl
from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import EngineBusy, TrainingHandle
from mistral_gateway.engines.fake import FakeClassifierTrainer
from mistral_gateway.errors import BadRequest, Conflict, NotFound
from mistral_gateway.protocol.fine_tuning import JobIn, LegacyJobMetadataOut, ListJobsQuery
from mistral_gateway.services.fine_tuning import FineTuningService
from mistral_gateway.services.fine_tuning_deps import FineTuningDeps
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.blobs import LocalBlobStore
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.fine_tuning import FineTuningRepository
from mistral_gateway.storage.jobs import JobRepository, JobStatus
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FileRecord
from mistral_gateway.storage.tokens import TokenRepository
from training_support import tiny_tokenizer

FT_ID = re.compile(r"^ft:ministral-3b-latest:[0-9a-f]{8}:\d{8}:[0-9a-f]{8}$")


class Env:
    def __init__(self, db: Database, tmp_path: Path, clock: Any) -> None:
        self.db, self.clock = db, clock
        tokens = TokenRepository(db)
        self.ws, self.other = (tokens.ensure_workspace(n, now=1).id for n in ("ws-a", "ws-b"))
        gguf = tmp_path / "base.gguf"
        gguf.write_bytes(b"GGUF" + bytes(1000))
        catalog = ModelCatalog([
            ModelEntry(id="small", aliases=["ministral-3b-latest"], engine="fake", path=str(gguf),
                       capabilities=["completion_chat"], max_context_length=2048),
            ModelEntry(id="upstream-only", engine="none", capabilities=["completion_chat"]),
            ModelEntry(id="embed", aliases=["mistral-embed"], engine="fake", capabilities=[], max_context_length=256)])
        self.trainer = Hooked()
        self.classifier: FakeClassifierTrainer | None = FakeClassifierTrainer()
        self.submitted: list[tuple[str, dict[str, Any], str]] = []
        self.files = FileRepository(db)
        self.blobs = LocalBlobStore(tmp_path / "blobs")
        self.models = FineTunedModelRepository(db, FileEpoch(tmp_path / "models.epoch"))
        self.jobs = JobRepository(db)
        self.tokenized: list[Path] = []
        self.deps = FineTuningDeps(
            repo=FineTuningRepository(db), files=self.files, blobs=self.blobs, catalog=catalog, models=self.models,
            data_dir=tmp_path / "data", trainer=self.trainer, tokenizer=self._tokenizer,
            locate=lambda entry: Path(entry.path) if entry.path else None, merge=fake_merge, jobs=self.jobs,
            classifier_trainer=lambda: self.classifier, poll_seconds=0, max_resumes=2, clock=clock,
            submit=lambda ws, payload, job_id: self.submitted.append((ws, payload, job_id)))
        self.service = FineTuningService(self.deps)

    def _tokenizer(self, gguf: Path) -> Any:
        self.tokenized.append(gguf)
        return tiny_tokenizer(CORPUS)

    def upload(self, content: bytes, filename: str = "train.jsonl", ws: str | None = None,
               purpose: str = "fine-tune") -> str:
        writer = self.blobs.writer()
        writer.write(content)
        blob = writer.commit()
        file_id = str(uuid.uuid4())
        self.files.add(FileRecord(id=file_id, workspace_id=ws or self.ws, filename=filename, bytes=len(content),
                                  created_at=int(self.clock()), purpose=purpose, sample_type="instruct",
                                  source="upload", num_lines=content.count(b"\n"), mimetype=None,
                                  sha256=blob.sha256, blob_key=blob.key, expires_at=None, visibility="workspace"))
        return file_id

    def create(self, ws: str | None = None, token: str | None = "tok-1", dry_run: bool = False,  # noqa: S107
               **fields: Any) -> Any:
        body = {"model": "ministral-3b-latest", "hyperparameters": {"training_steps": 12}, **fields}
        body.setdefault("training_files", [{"file_id": self.upload(jsonl(*[chat_line()] * 8), ws=ws)}])
        return self.service.create(ws or self.ws, token, JobIn.model_validate(body), dry_run)

    def run(self, job_id: str) -> dict[str, Any]:
        asyncio.run(self.service.handler(FakeJob({"job_id": job_id})))
        return self.get(job_id)

    def get(self, job_id: str, ws: str | None = None) -> dict[str, Any]:
        return self.service.get(ws or self.ws, job_id).model_dump()


@pytest.fixture
def env(db: Database, tmp_path: Path, clock: Any) -> Env:
    return Env(db, tmp_path, clock)


def statuses(job: dict[str, Any]) -> list[str]:
    """The status-change events, oldest first."""
    return [e["data"]["status"] for e in reversed(job["events"]) if e["name"] == "status-updated"]


def test_auto_start_runs_to_success_and_registers_the_model(env: Env) -> None:
    valid = env.upload(jsonl(chat_line("Where is Quillmar?", "In Zarnovia.")), "valid.jsonl")
    job = env.create(auto_start=True, suffix=None, validation_files=[valid],
                     hyperparameters={"training_steps": 12, "learning_rate": 0.002, "seq_len": 100})
    assert job.status == "QUEUED" and env.submitted == [(env.ws, {"job_id": job.id}, job.id)]
    done = env.run(job.id)
    assert done["status"] == "SUCCESS"
    assert statuses(done) == ["QUEUED", "VALIDATING", "VALIDATED", "STARTED", "RUNNING", "SUCCESS"]
    assert [c["step_number"] for c in done["checkpoints"]] == [12, 10]  # newest first
    assert done["checkpoints"][1]["metrics"] == {"train_loss": 0.2, "valid_loss": 0.25,
                                                 "valid_mean_token_accuracy": 1 - 1 / 11, "targets": None}
    spec = env.trainer.started[0]
    run_dir = env.deps.data_dir / "fine_tuning" / job.id
    assert (spec.run_dir, spec.cache_dir) == (str(run_dir), str(env.deps.data_dir / "training" / "bases"))
    assert (spec.training_steps, spec.learning_rate, spec.seq_len, spec.threads) == (12, 0.002, 100, 1)
    assert Path(spec.training_files[0]).read_bytes() == jsonl(*[chat_line()] * 8)  # the validated copy
    assert len(Path(spec.validation_files[0]).read_bytes().splitlines()) == 1
    model_id = done["fine_tuned_model"]
    assert FT_ID.match(model_id) and model_id.split(":")[2] == hashlib.sha256(job.id.encode()).hexdigest()[:8]
    model = env.models.get(env.ws, model_id)
    assert model is not None and (model.root, model.job_id, model.job_type) == ("ministral-3b-latest", job.id,
                                                                               "completion")
    assert model.artifact == f"fine_tuning/{job.id}/model.gguf" and (run_dir / "model.gguf").is_file()
    assert (model.capabilities, model.max_context_length) == (("completion_chat",), 2048)
    assert done["trained_tokens"] == done["metadata"]["train_tokens_per_step"] * 12
    env.run(job.id)  # a handler run again (a resumed runner job) changes nothing
    assert len(env.models.list(env.ws)) == 1 and len(env.trainer.started) == 1


def test_without_auto_start_the_job_waits_validated_for_start(env: Env) -> None:
    job = env.create(suffix="my-model")
    with pytest.raises(Conflict, match=r"QUEUED.*only a VALIDATED job"):
        env.service.start(env.ws, job.id)
    assert env.run(job.id)["status"] == "VALIDATED" and not env.trainer.started
    started = env.service.start(env.ws, job.id)
    assert started.status == "STARTED"
    runner = env.submitted[-1]
    assert runner[1] == {"job_id": job.id} and runner[2] != job.id
    with pytest.raises(Conflict, match="STARTED"):
        env.service.start(env.ws, job.id)
    done = env.run(job.id)
    assert done["status"] == "SUCCESS" and done["fine_tuned_model"].split(":")[2] == "my-model"


def test_every_bad_line_is_reported_with_its_file_and_number(env: Env) -> None:
    bad = env.upload(jsonl(chat_line(), "{not json", {"messages": [{"role": "user", "content": "hi"}]},
                           chat_line(), [1, 2]), "bad.jsonl")
    job = env.create(auto_start=True, training_files=[bad])
    done = env.run(job.id)
    assert done["status"] == "FAILED_VALIDATION" and not env.trainer.started
    samples = [e["data"] for e in reversed(done["events"]) if e["name"] == "invalid-sample"]
    assert [(s["file_id"], s["filename"], s["line"]) for s in samples] == [(bad, "bad.jsonl", n) for n in (2, 3, 5)]
    assert "not JSON" in samples[0]["error"] and "assistant" in samples[1]["error"]
    assert "JSON object" in samples[2]["error"]
    assert "3 of 5 lines are invalid" in done["events"][0]["data"]["message"]


def test_bad_lines_are_skipped_up_to_the_allowed_share(env: Env) -> None:
    content = jsonl(*[chat_line()] * 9, "oops")
    ok = env.create(auto_start=True, training_files=[env.upload(content)], invalid_sample_skip_percentage=0.1)
    done = env.run(ok.id)
    assert done["status"] == "SUCCESS" and statuses(done)[2] == "VALIDATED"
    assert len(Path(env.trainer.started[0].training_files[0]).read_bytes().splitlines()) == 9
    strict = env.create(auto_start=True, training_files=[env.upload(content)], invalid_sample_skip_percentage=0.05)
    assert env.run(strict.id)["status"] == "FAILED_VALIDATION"


def test_validation_files_count_and_a_file_without_any_good_line_fails(env: Env) -> None:
    job = env.create(training_files=[env.upload(jsonl("x", "y"))], invalid_sample_skip_percentage=0.5)
    done = env.run(job.id)
    assert done["status"] == "FAILED_VALIDATION" and done["events"][0]["data"]["message"] == "no valid training line"


def test_dry_run_estimates_from_the_data_without_a_job(env: Env) -> None:
    lines = [chat_line()] * 10
    out = env.create(dry_run=True, training_files=[env.upload(jsonl(*lines))],
                     hyperparameters={"epochs": 2.0, "seq_len": 100})
    assert isinstance(out, LegacyJobMetadataOut) and out.object == "job.metadata"
    from mistral_gateway.training.lora_data import encode_line

    per_line = len(encode_line(chat_line(), tiny_tokenizer(CORPUS), 100).input_ids)
    assert out.data_tokens == 10 * per_line and out.training_steps == math.ceil(2 * 10 / 4) and out.epochs == 2.0
    assert out.train_tokens_per_step == 4 * per_line and out.train_tokens == 5 * 4 * per_line
    assert out.cost == 0 and out.expected_duration_seconds is not None and out.expected_duration_seconds >= 1
    assert "10 valid training lines" in out.details
    assert env.service.list(env.ws, None, ListJobsQuery()).total == 0 and not env.submitted


def test_cancel_while_training_stops_the_trainer(env: Env) -> None:
    job = env.create(auto_start=True, hyperparameters={"training_steps": 50})

    def hook(step: int, handle: TrainingHandle) -> None:
        if step == 3:
            env.service.cancel(env.ws, job.id)

    env.trainer.hook = hook
    done = env.run(job.id)
    assert done["status"] == "CANCELLED" and statuses(done)[-2:] == ["CANCELLATION_REQUESTED", "CANCELLED"]
    assert done["fine_tuned_model"] is None and not env.models.list(env.ws)


def test_cancel_before_training_ends_the_job_at_once(env: Env) -> None:
    queued = env.create()
    assert env.service.cancel(env.ws, queued.id).status == "CANCELLED"
    assert env.run(queued.id)["status"] == "CANCELLED" and not env.tokenized  # the handler found nothing to do
    validated = env.create()
    env.run(validated.id)
    assert env.service.cancel(env.ws, validated.id).status == "CANCELLED"
    assert env.service.cancel(env.ws, validated.id).status == "CANCELLED"  # idempotent
    with pytest.raises(Conflict):
        env.service.start(env.ws, validated.id)


def test_a_failing_trainer_fails_the_job_with_its_message(env: Env) -> None:
    env.trainer.fail_at = 3
    done = env.run(env.create(auto_start=True).id)
    assert done["status"] == "FAILED" and done["events"][0]["data"]["message"] == "fake failure"


def test_a_crashed_trainer_resumes_from_its_last_checkpoint(env: Env) -> None:
    crashed: list[int] = []

    def hook(step: int, handle: TrainingHandle) -> None:
        if step == 13 and not crashed:
            crashed.append(step)
            env.trainer.crash(handle)

    env.trainer.hook = hook
    done = env.run(env.create(auto_start=True, hyperparameters={"training_steps": 20}).id)
    assert done["status"] == "SUCCESS" and len(env.trainer.started) == 2
    assert [e["data"]["resume"] for e in done["events"] if e["name"] == "training-resumed"] == [1]
    assert [c["step_number"] for c in done["checkpoints"]] == [20, 10]  # step 10 recorded once


def test_a_trainer_crashing_more_than_max_resumes_fails_visibly(env: Env) -> None:
    env.trainer.hook = lambda step, handle: env.trainer.crash(handle) if step == 2 else None
    done = env.run(env.create(auto_start=True).id)
    assert done["status"] == "FAILED" and len(env.trainer.started) == 3  # the first run and two resumes
    assert "without finishing 3 time(s)" in done["events"][0]["data"]["message"]


class ServerKilled(Exception):
    pass


def test_a_handler_killed_mid_training_is_resumed_by_the_next_one(env: Env) -> None:
    """The server dies while its worker trains on: the next handler (the runner's retry) watches the same worker."""
    def hook(step: int, handle: TrainingHandle) -> None:
        if step == 4:
            env.trainer.hook = None
            raise ServerKilled

    env.trainer.hook = hook
    job = env.create(auto_start=True)
    with pytest.raises(ServerKilled):
        env.run(job.id)
    assert env.get(job.id)["status"] == "RUNNING"
    done = env.run(job.id)
    assert done["status"] == "SUCCESS" and len(env.trainer.started) == 1


def test_a_job_whose_runner_gave_up_shows_failed(env: Env) -> None:
    job = env.create(auto_start=True)
    env.jobs.enqueue(env.ws, "fine_tuning", {"job_id": job.id}, now=env.clock(), job_id=job.id, max_attempts=1)
    claimed = env.jobs.claim("w", ["fine_tuning"], 30, env.clock())
    assert claimed is not None and claimed.lease_id is not None
    env.jobs.finish(job.id, claimed.lease_id, JobStatus.FAILED, env.clock(), "worker lost 3 times")
    done = env.get(job.id)
    assert done["status"] == "FAILED" and done["events"][0]["data"]["message"] == "worker lost 3 times"


def test_classifier_jobs_train_a_head_on_the_embedding_model(env: Env) -> None:
    lines = jsonl(classifier_line(), classifier_line("awful movie", "negative"))
    targets = [{"name": "sentiment", "labels": ["positive", "negative"]}]
    job = env.create(auto_start=True, job_type="classifier", classifier_targets=targets,
                     training_files=[env.upload(lines)], validation_files=[env.upload(lines)],
                     hyperparameters={"training_steps": 4, "fim_ratio": 0.5})
    assert job.job_type == "classifier" and "fim_ratio" not in job.hyperparameters
    done = env.run(job.id)
    assert done["status"] == "SUCCESS" and not env.tokenized
    assert done["classifier_targets"][0]["loss_function"] == "single_class"
    assert done["checkpoints"][0]["metrics"]["targets"] == {"sentiment": {"valid_accuracy": 0.8}}
    assert env.classifier is not None
    spec = env.classifier.started[0]
    assert spec.encoder == "embed" and spec.targets[0].labels == ("positive", "negative")
    model = env.models.get(env.ws, done["fine_tuned_model"])
    assert model is not None and done["fine_tuned_model"].startswith("ft:classifier:ministral-3b-latest:")
    assert (model.job_type, model.capabilities, model.max_context_length) == ("classifier", ("classification",), 256)
    assert model.artifact == f"fine_tuning/{job.id}/head.bin"


def test_classifier_lines_are_checked_against_the_targets(env: Env) -> None:
    lines = jsonl(classifier_line(), classifier_line(label="meh"), {"text": "x", "labels": {"topic": "a"}})
    job = env.create(job_type="classifier", training_files=[env.upload(lines)],
                     classifier_targets=[{"name": "sentiment", "labels": ["positive", "negative"]}])
    done = env.run(job.id)
    assert done["status"] == "FAILED_VALIDATION"
    assert [e["data"]["line"] for e in reversed(done["events"]) if e["name"] == "invalid-sample"] == [2, 3]


def test_a_classifier_job_without_targets_reads_them_from_its_lines(env: Env) -> None:
    # as the SDK's classifier example sends it: job_type classifier, no classifier_targets
    lines = jsonl(classifier_line(), classifier_line("awful movie", "negative"),
                  {"text": "rain and trains", "labels": {"topics": ["weather", "travel"]}}, {"text": "x"})
    job = env.create(auto_start=True, job_type="classifier", training_files=[env.upload(lines)],
                     invalid_sample_skip_percentage=0.5)
    done = env.run(job.id)
    assert done["status"] == "SUCCESS", done["events"][:3]
    assert done["classifier_targets"] == [
        {"name": "sentiment", "labels": ["negative", "positive"], "weight": 1.0, "loss_function": "single_class"},
        {"name": "topics", "labels": ["travel", "weather"], "weight": 1.0, "loss_function": "multi_class"}]
    assert env.classifier is not None
    assert [(t.name, t.multi_label) for t in env.classifier.started[0].targets] == [("sentiment", False),
                                                                                    ("topics", True)]
    # the line without labels was reported, and skipped within the allowed share
    assert [e["data"]["line"] for e in done["events"] if e["name"] == "invalid-sample"] == [4]


def test_a_classifier_job_whose_lines_name_no_target_fails_validation(env: Env) -> None:
    job = env.create(job_type="classifier", training_files=[env.upload(jsonl({"text": "no labels here"}))])
    done = env.run(job.id)
    assert done["status"] == "FAILED_VALIDATION" and "no line has 'labels'" in done["events"][0]["data"]["message"]


def test_a_classifier_job_without_a_classifier_trainer_fails_saying_so(env: Env) -> None:
    env.classifier = None
    done = env.run(env.create(auto_start=True, job_type="classifier", training_files=[env.upload(jsonl(
        classifier_line()))], classifier_targets=[{"name": "sentiment", "labels": ["positive", "negative"]}]).id)
    assert done["status"] == "FAILED" and "no classifier trainer" in done["events"][0]["data"]["message"]


@pytest.mark.parametrize(("fields", "text"), [
    ({"model": "nonexistent-model"}, "'nonexistent-model' cannot be fine-tuned"),
    ({"model": "upstream-only"}, "'upstream-only' cannot be fine-tuned"),
    ({"model": "mistral-embed"}, "'mistral-embed' cannot be fine-tuned"),
    ({"repositories": [{"type": "github", "name": "r", "owner": "o", "token": "t"}]}, "repositories are not"),
    ({"classifier_targets": [{"name": "a", "labels": ["x"]}] * 2}, "name of its own"),
    ({"job_type": "completion", "classifier_targets": [{"name": "a", "labels": ["x"]}]}, "belong to classifier"),
    ({"classifier_targets": [{"name": "a", "labels": ["x"]}]}, "at least two labels"),
    ({"training_files": []}, "at least one file"),
    ({"training_files": [str(uuid.uuid4())]}, "not found"),
    ({"training_files": ["not-a-uuid"]}, "not found"),
])
def test_bad_jobs_are_refused_with_a_clear_reason(env: Env, fields: dict[str, Any], text: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(text)):
        env.create(**fields)


def test_files_of_another_purpose_or_workspace_are_refused(env: Env) -> None:
    with pytest.raises(BadRequest, match="purpose 'batch'"):
        env.create(training_files=[env.upload(jsonl(chat_line()), purpose="batch")])
    with pytest.raises(BadRequest, match="not found"):
        env.create(training_files=[env.upload(jsonl(chat_line()), ws=env.other)])


def test_integrations_are_stored_without_their_key_and_say_they_are_unreachable(env: Env) -> None:
    job = env.create(integrations=[{"project": "p", "name": "n", "api_key": "k" * 40}])
    assert job.integrations[0].model_dump() == {"type": "wandb", "project": "p", "name": "n", "run_name": None,
                                                "url": None}
    detailed = env.get(job.id)
    assert "k" * 40 not in str(detailed)
    assert "not reachable from this deployment" in next(
        e["data"]["message"] for e in detailed["events"] if e["name"] == "integrations-unreachable")


def test_another_workspace_sees_nothing(env: Env) -> None:
    job = env.create()
    for call in (env.service.get, env.service.start, env.service.cancel):
        with pytest.raises(NotFound):
            call(env.other, job.id)
    with pytest.raises(NotFound):
        env.service.get(env.ws, "nonsense")
    assert env.service.list(env.other, None, ListJobsQuery()).total == 0


def test_list_filters_and_pages(env: Env) -> None:
    first = env.create(suffix="a", integrations=[{"project": "proj", "name": "run", "api_key": "k" * 40}])
    env.clock.advance(100)
    second = env.create(token="tok-2", suffix="b")
    env.clock.advance(100)
    third = env.create(suffix="b")
    env.service.cancel(env.ws, third.id)

    def ids(**query: Any) -> list[str]:
        return [j.id for j in env.service.list(env.ws, "tok-1", ListJobsQuery.model_validate(query)).data]

    assert ids() == [third.id, second.id, first.id]
    assert ids(page_size=2) == [third.id, second.id] and ids(page_size=2, page=1) == [first.id]
    assert env.service.list(env.ws, None, ListJobsQuery(page_size=1)).total == 3
    assert ids(created_by_me=True) == [third.id, first.id]
    assert ids(status="CANCELLED") == [third.id] and ids(suffix="b") == [third.id, second.id]
    assert ids(wandb_project="proj") == [first.id] == ids(wandb_name="run")
    assert ids(model="ministral-3b-latest") == [third.id, second.id, first.id] and ids(model="other") == []
    start = int(env.clock()) - 100
    assert ids(created_after=start) == [third.id, second.id] and ids(created_before=start) == [second.id, first.id]


class BusyOnce(Hooked):
    """Its first start finds a worker already training there (started by a handler that died before saving the
    pid): the run exists, ``worker.pid`` names it, and start refuses as LocalTrainer does."""

    def start(self, spec: Any) -> TrainingHandle:
        if not self.started:
            super().start(spec)
            (Path(spec.run_dir) / "worker.pid").write_text("4242\n")
            raise EngineBusy(f"a training run is already active in {spec.run_dir}")
        return super().start(spec)


def test_a_worker_left_running_without_a_saved_pid_is_watched_not_doubled(env: Env) -> None:
    env.deps.trainer = env.trainer = BusyOnce()
    job = env.create(auto_start=True)
    done = env.run(job.id)
    assert done["status"] == "SUCCESS" and len(env.trainer.started) == 1
    record = env.deps.repo.get(job.id)
    assert record is not None and record.trainer_pid == 4242


def test_a_job_ended_elsewhere_stops_its_trainer(env: Env) -> None:
    job = env.create(auto_start=True, hyperparameters={"training_steps": 50})
    cancelled: list[TrainingHandle] = []
    env.trainer.hook = lambda step, handle: env.deps.repo.transition(
        job.id, "FAILED", 1, data={"message": "the runner gave up"}) if step == 3 else None
    original = env.trainer.cancel
    env.trainer.cancel = lambda handle: (cancelled.append(handle), original(handle))  # type: ignore[method-assign]
    done = env.run(job.id)
    assert done["status"] == "FAILED" and len(cancelled) == 1 and done["fine_tuned_model"] is None


def test_a_validation_killed_midway_is_redone_and_reports_each_bad_line_once(env: Env) -> None:
    job = env.create(training_files=[env.upload(jsonl(*[chat_line()] * 9, "oops"))], invalid_sample_skip_percentage=0.1)
    transition = env.deps.repo.transition

    def dies_once(job_id: str, status: str, *args: Any, **kw: Any) -> bool:
        if status == "VALIDATED":
            env.deps.repo.transition = transition  # type: ignore[method-assign]
            raise ServerKilled
        return transition(job_id, status, *args, **kw)

    env.deps.repo.transition = dies_once  # type: ignore[method-assign]
    with pytest.raises(ServerKilled):
        env.run(job.id)
    assert env.get(job.id)["status"] == "VALIDATING"
    done = env.run(job.id)
    assert done["status"] == "VALIDATED"
    assert [e["data"]["line"] for e in done["events"] if e["name"] == "invalid-sample"] == [10]


def test_a_classifier_dry_run_counts_words_and_steps_of_32_lines(env: Env) -> None:
    lines = jsonl(*[classifier_line("great movie")] * 40, classifier_line("bad", "nope"))
    out = env.create(dry_run=True, job_type="classifier", training_files=[env.upload(lines)],
                     classifier_targets=[{"name": "sentiment", "labels": ["positive", "negative"]}],
                     hyperparameters={"epochs": 2})
    assert isinstance(out, LegacyJobMetadataOut)
    assert (out.data_tokens, out.training_steps, out.train_tokens_per_step) == (80, math.ceil(2 * 40 / 32), 64)
    assert "1 of 41 lines are invalid" in out.details and not env.tokenized
