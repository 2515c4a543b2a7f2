"""storage.secrets: sealed upstream keys by upstream name, written over in place, bytes back as bytes."""

from __future__ import annotations

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.secrets import UpstreamSecretRepository

SEALED = bytes(range(256))  # every byte value, NUL included: PostgreSQL's bytea holds them


def test_put_overwrites_all_updated_delete(db: Database) -> None:
    repo = UpstreamSecretRepository(db)
    assert repo.all() == {} and repo.updated() == {}
    repo.put("cloud", SEALED, 100)
    repo.put("other", b"\x00", 100)
    repo.put("cloud", SEALED[::-1], 2**40)  # a second put replaces the row, it does not add one
    stored = repo.all()
    assert stored == {"cloud": SEALED[::-1], "other": b"\x00"}
    assert all(type(v) is bytes for v in stored.values())  # not a memoryview: callers compare and decrypt bytes
    assert repo.updated() == {"cloud": 2**40, "other": 100}
    assert repo.delete("cloud") and not repo.delete("cloud")
    assert repo.all() == {"other": b"\x00"}
