"""storage.models: fine-tuned model rows per workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FineTunedModelRecord
from mistral_gateway.storage.tokens import TokenRepository


@pytest.fixture
def repo(db: Database, tmp_path: Path) -> FineTunedModelRepository:
    return FineTunedModelRepository(db, FileEpoch(tmp_path / "models.epoch"))


@pytest.fixture
def workspaces(db: Database) -> tuple[str, str]:
    tokens = TokenRepository(db)
    return tokens.ensure_workspace("a", now=1).id, tokens.ensure_workspace("b", now=1).id


def ft(workspace_id: str, model_id: str, created_at: int = 100, **kw: object) -> FineTunedModelRecord:
    values: dict[str, object] = dict(
        id=model_id, workspace_id=workspace_id, root="qwen2.5-coder-1.5b-instruct",
        job_id="0b3f5c1e-0000-4000-8000-000000000001", name="my model", description="tuned",
        archived=False, capabilities=("completion_chat", "fine_tuning"), max_context_length=4096,
        created_at=created_at,
    )
    values.update(kw)
    return FineTunedModelRecord(**values)  # type: ignore[arg-type]


def test_add_get_roundtrip(repo: FineTunedModelRepository, workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    rec = ft(a, "ft:small:abc", archived=True, name=None, description=None)
    repo.add(rec)
    got = repo.get(a, "ft:small:abc")
    assert got == rec
    assert got is not None
    assert isinstance(got.capabilities, tuple)


def test_list_ordered_and_isolated(repo: FineTunedModelRepository, workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    repo.add(ft(a, "ft:2", created_at=200))
    repo.add(ft(a, "ft:1", created_at=100))
    repo.add(ft(b, "ft:b", created_at=50))
    assert [r.id for r in repo.list(a)] == ["ft:1", "ft:2"]
    assert [r.id for r in repo.list(b)] == ["ft:b"]
    assert repo.get(a, "ft:b") is None
    assert repo.get(b, "ft:1") is None


def test_delete_is_workspace_scoped(repo: FineTunedModelRepository, workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    repo.add(ft(a, "ft:x"))
    assert repo.delete(b, "ft:x") is False
    assert repo.get(a, "ft:x") is not None
    assert repo.delete(a, "ft:x") is True
    assert repo.get(a, "ft:x") is None
    assert repo.delete(a, "ft:x") is False


def test_writes_bump_the_epoch(repo: FineTunedModelRepository, workspaces: tuple[str, str], tmp_path: Path) -> None:
    """Other processes on this node watch the epoch file to drop cached model listings."""
    a, b = workspaces
    watcher = FileEpoch(tmp_path / "models.epoch")  # e.g. the server, while the CLI writes
    start = watcher.current()
    repo.add(ft(a, "ft:y"))
    after_add = watcher.current()
    assert after_add != start
    assert repo.delete(b, "ft:y") is False
    assert watcher.current() == after_add  # nothing changed: no bump
    repo.list(a)
    repo.get(a, "ft:y")
    assert watcher.current() == after_add  # reads never bump
    assert repo.delete(a, "ft:y") is True
    assert watcher.current() != after_add


def test_update_is_workspace_scoped_and_bumps_the_epoch(repo: FineTunedModelRepository, workspaces: tuple[str, str],
                                                        tmp_path: Path) -> None:
    a, b = workspaces
    repo.add(ft(a, "ft:u", job_type="classifier", artifact="fine_tuning/j/head.safetensors"))
    watcher = FileEpoch(tmp_path / "models.epoch")
    before = watcher.current()
    assert repo.update(b, "ft:u", name="theirs") is None
    assert watcher.current() == before  # nothing changed: no bump
    got = repo.update(a, "ft:u", name="renamed", description=None, archived=True)
    assert got is not None
    assert (got.name, got.description, got.archived) == ("renamed", None, True)
    assert (got.job_type, got.artifact) == ("classifier", "fine_tuning/j/head.safetensors")  # the rest stays
    assert watcher.current() != before
    assert repo.get(a, "ft:u") == got
    assert repo.update(a, "ft:u") == got  # no values: the record as it is
    with pytest.raises(ValueError, match="cannot change"):
        repo.update(a, "ft:u", root="other")
