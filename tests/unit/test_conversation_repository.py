"""storage.conversations on SQLite and PostgreSQL: a conversation and its entries in one transaction, appends at
the next seq (a concurrent append is a Conflict, never an integrity error), list order, pagination and metadata
filter, delete (entries first), and the workspace filter on every read."""

from __future__ import annotations

import pytest

from mistral_gateway.errors import Conflict
from mistral_gateway.storage.conversations import ConversationRecord, ConversationRepository, StoredEntry
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tokens import TokenRepository

NOW = 1_700_000_000_000_000


@pytest.fixture
def repo(db: Database) -> ConversationRepository:
    return ConversationRepository(db)


@pytest.fixture
def ws(db: Database) -> tuple[str, str]:
    tokens = TokenRepository(db)
    return tokens.ensure_workspace("default", 1).id, tokens.ensure_workspace("other", 1).id


def record(conversation_id: str, workspace_id: str, at: int = NOW, **kw: object) -> ConversationRecord:
    fields = {"agent_id": None, "agent_version": None, "model": "m", "config": {"instructions": "x"}, "name": None,
              "description": None, "metadata": None, **kw}
    return ConversationRecord(conversation_id, workspace_id, created_at=at, updated_at=at, **fields)  # type: ignore[arg-type]


def entries(*ids: str) -> list[StoredEntry]:
    return [StoredEntry({"id": i, "type": "message.input", "role": "user", "content": i}, NOW) for i in ids]


def test_add_append_and_read_back(repo: ConversationRepository, ws: tuple[str, str]) -> None:
    mine, _ = ws
    repo.add(record("conv_a", mine, metadata={"k": "v"}), entries("msg_1", "msg_2"))
    repo.append("conv_a", 2, entries("msg_3"), NOW + 5)
    got = repo.get(mine, "conv_a")
    assert got is not None and got.config == {"instructions": "x"} and got.metadata == {"k": "v"}
    assert got.updated_at == NOW + 5
    assert [e.id for e in repo.entries("conv_a")] == ["msg_1", "msg_2", "msg_3"]
    assert repo.entries("conv_a")[2].body["content"] == "msg_3"
    assert repo.entry_count("conv_a") == 3


def test_an_append_at_a_taken_seq_is_a_conflict(repo: ConversationRepository, ws: tuple[str, str]) -> None:
    mine, _ = ws
    repo.add(record("conv_a", mine), entries("msg_1"))
    repo.append("conv_a", 1, entries("msg_2"), NOW)
    with pytest.raises(Conflict):
        repo.append("conv_a", 1, entries("msg_3"), NOW)  # another request took seq 1 first
    assert [e.id for e in repo.entries("conv_a")] == ["msg_1", "msg_2"]  # nothing of the loser was written
    with pytest.raises(Conflict):
        repo.append("conv_gone", 0, entries("msg_4"), NOW)


def test_list_order_pages_and_metadata(repo: ConversationRepository, ws: tuple[str, str]) -> None:
    mine, other = ws
    for i in range(5):
        repo.add(record(f"conv_{i}", mine, NOW + i, metadata={"even": i % 2 == 0, "i": i}), [])
    repo.add(record("conv_x", other, NOW + 9, metadata={"even": True}), [])
    assert [r.id for r in repo.list(mine, offset=0, limit=10)] == ["conv_4", "conv_3", "conv_2", "conv_1", "conv_0"]
    assert [r.id for r in repo.list(mine, offset=1, limit=2)] == ["conv_3", "conv_2"]
    assert [r.id for r in repo.list(mine, offset=0, limit=10, metadata={"even": True})] == ["conv_4", "conv_2",
                                                                                            "conv_0"]
    assert [r.id for r in repo.list(mine, offset=1, limit=1, metadata={"even": True})] == ["conv_2"]
    assert repo.list(mine, offset=0, limit=10, metadata={"even": True, "i": 3}) == []


def test_workspace_filter_and_delete(repo: ConversationRepository, ws: tuple[str, str]) -> None:
    mine, other = ws
    repo.add(record("conv_a", mine), entries("msg_1", "msg_2"))
    assert repo.get(other, "conv_a") is None
    assert repo.delete(other, "conv_a") is False
    assert repo.get(mine, "conv_a") is not None
    assert repo.delete(mine, "conv_a") is True
    assert repo.get(mine, "conv_a") is None and repo.entries("conv_a") == []
    assert repo.delete(mine, "conv_a") is False
    repo.add(record("conv_b", mine), entries("msg_1"))  # the deleted conversation's entry ids are free again
