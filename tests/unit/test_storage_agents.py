"""storage.agents: agents and their versions, scoped to a workspace, soft-deleted; on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mistral_gateway.services.agent_snapshot import new_id
from mistral_gateway.storage.agents import AgentFilter, AgentRecord, AgentRepository
from mistral_gateway.storage.db import Database


@pytest.fixture
def repo(db: Database) -> AgentRepository:
    return AgentRepository(db)


def add(repo: AgentRepository, workspace_id: str, name: str = "a", *, created_at: int = 100, source: str = "api",
        deployment_chat: bool = False, metadata: dict[str, object] | None = None) -> AgentRecord:
    record = AgentRecord(id=new_id("ag"), workspace_id=workspace_id, name=name, source=source,
                         deployment_chat=deployment_chat, metadata=metadata, version=0, latest_version=0,
                         created_at=created_at, updated_at=created_at)
    repo.add(record, {"model": "m", "name": name, "metadata": metadata})
    return record


def ids(repo: AgentRepository, workspace_id: str, flt: AgentFilter | None = None, offset: int = 0,
        limit: int = 100) -> list[str]:
    return [r.id for r in repo.list(workspace_id, flt or AgentFilter(), offset=offset, limit=limit)]


def test_add_get_and_versions(repo: AgentRepository, ws: str) -> None:
    rec = add(repo, ws, metadata={"k": [1, 2]})
    assert repo.get(ws, rec.id) == rec
    assert repo.body(rec.id, 0) == {"model": "m", "name": "a", "metadata": {"k": [1, 2]}}
    assert repo.body(rec.id, 1) is None and repo.versions(rec.id) == [0]
    one = repo.add_version(ws, rec.id, {"model": "m2", "name": "b"}, name="b", metadata=None, deployment_chat=True,
                           now=200)
    assert one is not None and (one.version, one.latest_version, one.name, one.deployment_chat) == (1, 1, "b", True)
    assert (one.updated_at, one.created_at, one.metadata) == (200, 100, None)
    two = repo.add_version(ws, rec.id, {"model": "m3", "name": "c"}, name="c", metadata={"x": 1},
                           deployment_chat=True, now=300)
    assert two is not None and (two.version, two.latest_version) == (2, 2)
    assert repo.versions(rec.id) == [0, 1, 2] and repo.body(rec.id, 1) == {"model": "m2", "name": "b"}
    back = repo.set_version(ws, rec.id, 0, name="a", metadata=None, now=400)
    assert back is not None and (back.version, back.latest_version, back.name, back.updated_at) == (0, 2, "a", 400)
    three = repo.add_version(ws, rec.id, {"model": "m", "name": "d"}, name="d", metadata=None, deployment_chat=False,
                             now=500)
    assert three is not None and three.version == 3  # latest + 1, not active + 1
    other = add(repo, ws, "other")
    assert repo.versions_of([rec.id, other.id, "ag_none"]) == {rec.id: [0, 1, 2, 3], other.id: [0]}
    bodies = repo.active_bodies([three, other])
    assert bodies == {rec.id: {"model": "m", "name": "d"}, other.id: {"model": "m", "name": "other", "metadata": None}}
    assert repo.active_bodies([]) == {}


def test_concurrent_updates_get_distinct_versions(repo: AgentRepository, ws: str) -> None:
    rec = add(repo, ws)

    def bump(i: int) -> int:
        done = repo.add_version(ws, rec.id, {"model": "m", "name": str(i)}, name=str(i), metadata=None,
                                deployment_chat=False, now=1000 + i)
        assert done is not None
        return done.version

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(bump, range(8)))
    assert sorted(versions) == list(range(1, 9)) and repo.versions(rec.id) == list(range(9))


def test_workspace_isolation(repo: AgentRepository, ws: str, other_ws: str) -> None:
    mine, theirs = add(repo, ws), add(repo, other_ws)
    assert repo.get(ws, theirs.id) is None and repo.get(other_ws, mine.id) is None
    assert ids(repo, ws) == [mine.id] and repo.count(ws) == 1
    assert repo.add_version(ws, theirs.id, {}, name="x", metadata=None, deployment_chat=False, now=2) is None
    assert repo.set_version(ws, theirs.id, 0, name="x", metadata=None, now=2) is None
    assert repo.delete(ws, theirs.id, 2) is False and repo.get(other_ws, theirs.id) is not None


def test_soft_delete_keeps_the_versions(repo: AgentRepository, ws: str) -> None:
    rec, kept = add(repo, ws), add(repo, ws, "kept", created_at=101)
    assert repo.delete(ws, rec.id, 500) is True
    assert repo.delete(ws, rec.id, 600) is False  # already gone
    assert repo.get(ws, rec.id) is None and ids(repo, ws) == [kept.id] and repo.count(ws) == 1
    gone = repo.get(ws, rec.id, include_deleted=True)
    assert gone is not None and gone.deleted_at == 500 and repo.body(rec.id, 0) is not None
    assert repo.add_version(ws, rec.id, {}, name="x", metadata=None, deployment_chat=False, now=700) is None
    assert repo.set_version(ws, rec.id, 0, name="x", metadata=None, now=700) is None


def test_list_filters_and_pages(repo: AgentRepository, ws: str) -> None:
    a = add(repo, ws, "alpha", created_at=1, metadata={"team": "x", "n": 1})
    b = add(repo, ws, "beta_1", created_at=2, source="playground", deployment_chat=True, metadata={"team": "y"})
    c = add(repo, ws, "Alphabet", created_at=3, metadata={"team": "x", "n": 2})
    assert ids(repo, ws) == [a.id, b.id, c.id]  # creation order
    assert ids(repo, ws, offset=1, limit=1) == [b.id] and ids(repo, ws, offset=3) == []
    assert ids(repo, ws, AgentFilter(deployment_chat=True)) == [b.id]
    assert ids(repo, ws, AgentFilter(deployment_chat=False)) == [a.id, c.id]
    assert ids(repo, ws, AgentFilter(sources=("playground", "agent_builder_v1"))) == [b.id]
    assert ids(repo, ws, AgentFilter(name="alpha")) == [a.id]
    assert ids(repo, ws, AgentFilter(search="ALPHA")) == [a.id, c.id]  # case-insensitive substring
    assert ids(repo, ws, AgentFilter(search="a_1")) == [b.id]  # _ is literal, not a wildcard
    assert ids(repo, ws, AgentFilter(search="%")) == []
    assert ids(repo, ws, AgentFilter(search=b.id[3:20])) == [b.id]  # part of an id
    assert ids(repo, ws, AgentFilter(id=c.id)) == [c.id]
    assert ids(repo, ws, AgentFilter(metadata={"team": "x"})) == [a.id, c.id]
    assert ids(repo, ws, AgentFilter(metadata={"team": "x", "n": 2})) == [c.id]
    assert ids(repo, ws, AgentFilter(metadata={"team": "x"}), offset=1, limit=1) == [c.id]
    assert ids(repo, ws, AgentFilter(metadata={"missing": None})) == []  # a key must be there
    assert ids(repo, ws, AgentFilter(metadata={"team": "x"}, name="alpha")) == [a.id]
