"""storage.fine_tuning: job rows per workspace, their events (newest first) and checkpoints (one per step)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.fine_tuning import (
    CheckpointRecord,
    EventRecord,
    FineTuningFilter,
    FineTuningJobRecord,
    FineTuningRepository,
)

NOW = 1_700_000_000


@pytest.fixture
def repo(db: Database) -> FineTuningRepository:
    return FineTuningRepository(db)


def job(workspace_id: str, *, created_at: int = NOW, **kw: Any) -> FineTuningJobRecord:
    return FineTuningJobRecord(**{
        "id": str(uuid.uuid4()), "workspace_id": workspace_id, "token_id": "tok_a", "model": "ministral-3b-latest",
        "job_type": "completion", "status": "QUEUED", "auto_start": False, "suffix": None,
        "hyperparameters": {"training_steps": 10, "learning_rate": 1e-4},
        "training_files": [{"file_id": "f", "weight": 1}], "validation_files": [], "integrations": [],
        "classifier_targets": None, "invalid_sample_skip_percentage": 0.0, "created_at": created_at,
        "modified_at": created_at, **kw})


def ids(repo: FineTuningRepository, ws: str, flt: FineTuningFilter | None = None, *, offset: int = 0,
        limit: int = 100) -> tuple[list[str], int]:
    rows, total = repo.list(ws, flt or FineTuningFilter(), offset=offset, limit=limit)
    return [r.id for r in rows], total


def test_add_get_roundtrip_with_its_first_event(repo: FineTuningRepository, ws: str, other_ws: str) -> None:
    rec = job(ws, suffix="my-model", wandb_project="proj", wandb_name="run ✓", metadata={"cost": 1.5},
              classifier_targets=[{"name": "t", "labels": ["a", "b"], "weight": 1.0}], trained_tokens=2**40,
              trainer_pid=4_000_000, invalid_sample_skip_percentage=0.25)
    repo.add(rec, EventRecord("status-updated", {"status": "QUEUED"}, NOW))
    assert repo.get(rec.id, ws) == rec and repo.get(rec.id) == rec
    assert repo.get(rec.id, other_ws) is None
    assert repo.events(rec.id) == [EventRecord("status-updated", {"status": "QUEUED"}, NOW)]


def test_list_newest_first_ties_by_id_and_filters(repo: FineTuningRepository, ws: str, other_ws: str) -> None:
    same = [job(ws, id=f"00000000-0000-4000-8000-00000000000{i}", model="a") for i in range(3)]
    for rec in reversed(same):
        repo.add(rec)
    early = job(ws, created_at=NOW - 100, model="b", status="RUNNING", suffix="s", wandb_project="p", token_id="t2")
    repo.add(early)
    repo.add(job(other_ws))
    assert ids(repo, ws) == ([r.id for r in reversed(same)] + [early.id], 4)
    assert ids(repo, ws, offset=2, limit=1) == ([same[0].id], 4)
    for flt in (FineTuningFilter(model="b"), FineTuningFilter(status="RUNNING"), FineTuningFilter(suffix="s"),
                FineTuningFilter(wandb_project="p"), FineTuningFilter(token_id="t2"),
                FineTuningFilter(created_before=NOW - 100)):
        assert ids(repo, ws, flt) == ([early.id], 1), flt
    assert ids(repo, ws, FineTuningFilter(model="A"))[1] == 0  # exact, case too, on both databases
    assert ids(repo, ws, FineTuningFilter(created_after=NOW))[1] == 3  # inclusive


def test_transition_is_a_compare_and_set_that_records_an_event(repo: FineTuningRepository, ws: str) -> None:
    rec = job(ws)
    repo.add(rec)
    assert repo.transition(rec.id, "RUNNING", NOW + 1, only_if=("QUEUED",), runner_job_id="r1")
    assert not repo.transition(rec.id, "CANCELLED", NOW + 2, only_if=("QUEUED",))
    assert repo.transition(rec.id, "SUCCESS", NOW + 3, data={"note": "done"}, fine_tuned_model="ft:x",
                           trained_tokens=123)
    repo.update(rec.id, metadata={"expected_duration_seconds": 5})
    assert repo.get(rec.id) == dataclasses.replace(rec, status="SUCCESS", modified_at=NOW + 3, runner_job_id="r1",
                                                   fine_tuned_model="ft:x", trained_tokens=123,
                                                   metadata={"expected_duration_seconds": 5})
    assert [(e.name, e.data) for e in repo.events(rec.id)] == [
        ("status-updated", {"status": "SUCCESS", "note": "done"}), ("status-updated", {"status": "RUNNING"})]


def test_events_come_newest_first_in_insertion_order(repo: FineTuningRepository, ws: str) -> None:
    rec = job(ws)
    repo.add(rec)
    repo.add_events(rec.id, [EventRecord(f"e{i}", None, NOW) for i in range(3)])  # one second: order by id
    repo.add_events(rec.id, [EventRecord("e3", {"k": [1, 2]}, NOW)])
    assert [e.name for e in repo.events(rec.id)] == ["e3", "e2", "e1", "e0"]


def test_a_checkpoint_step_is_recorded_once(repo: FineTuningRepository, ws: str) -> None:
    rec = job(ws)
    repo.add(rec)
    assert repo.add_checkpoint(rec.id, CheckpointRecord(5, {"train_loss": 1.5}, NOW))
    assert repo.add_checkpoint(rec.id, CheckpointRecord(10, {"train_loss": 0.5}, NOW + 1))
    # a resumed run reports step 5 again: refused by the unique index, and the session is still usable after
    assert not repo.add_checkpoint(rec.id, CheckpointRecord(5, {"train_loss": 9.0}, NOW + 2))
    assert repo.add_checkpoint(rec.id, CheckpointRecord(15, {}, NOW + 3))
    assert repo.checkpoint_steps(rec.id) == {5, 10, 15}
    assert repo.checkpoints(rec.id) == [CheckpointRecord(15, {}, NOW + 3), CheckpointRecord(10, {"train_loss": 0.5},
                                        NOW + 1), CheckpointRecord(5, {"train_loss": 1.5}, NOW)]
