"""services.tokens: creating, verifying (with a cache), and revoking API tokens — across processes too."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mistral_gateway.errors import BadRequest, NotFound, Unauthorized
from mistral_gateway.protocol.admin import MAX_LIMIT_VALUE
from mistral_gateway.registry import Registry
from mistral_gateway.services.tokens import Principal, TokenService
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.tokens import TokenRepository

SCOPES = Registry.load().scopes
TOKEN_RE = re.compile(r"^at_[A-Za-z0-9_-]{32,}$")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def open_service(data_dir: Path, db: Database) -> Iterator[Callable[..., tuple[TokenService, Database]]]:
    """Open a TokenService on the shared data dir and database; each call is an independent instance (like another
    process)."""
    opened: list[Database] = []

    def open_(clock: Callable[[], float] | None = None, cache_size: int = 10_000,
              repo_cls: type[TokenRepository] = TokenRepository, **kwargs: Any) -> tuple[TokenService, Database]:
        database = Database(db.url)  # its own engine; ``db`` is already migrated
        opened.append(database)
        if clock is not None:
            kwargs["clock"] = clock
        svc = TokenService(repo_cls(database), FileEpoch(data_dir / "tokens.epoch"), valid_scopes=SCOPES,
                           cache_size=cache_size, **kwargs)
        return svc, database

    yield open_
    for database in opened:
        database.dispose()


@pytest.fixture
def svc(open_service: Callable[..., tuple[TokenService, Database]], clock: Any) -> TokenService:
    return open_service(clock)[0]


def unauthorized_code(fn: Callable[[], object]) -> str:
    with pytest.raises(Unauthorized) as info:
        fn()
    assert info.value.status == 401
    return info.value.code


# -- create --------------------------------------------------------------------------------------------------


def test_token_format(svc: TokenService) -> None:
    tokens = {svc.create(f"t{i}")[0] for i in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert TOKEN_RE.match(token), token


def test_create_record(svc: TokenService, clock: Any) -> None:
    token, rec = svc.create("ci", workspace="team", scopes=["files", "models", "files"], expires_in=3600)
    assert rec.id.startswith("tok_")
    assert rec.name == "ci"
    assert rec.workspace_name == "team"
    assert rec.scopes == ("files", "models")  # duplicates dropped, order kept
    assert rec.created_at == int(clock.now)
    assert rec.expires_at == int(clock.now) + 3600
    assert rec.revoked_at is None
    assert rec.prefix == token[:10]
    assert rec.token_hash == hashlib.sha256(token.encode()).hexdigest()


def test_default_scope_is_everything(svc: TokenService) -> None:
    _, rec = svc.create("all")
    assert rec.scopes == ("*",)
    assert rec.expires_at is None


def test_only_the_hash_is_stored(svc: TokenService, tmp_path: Path, open_service: Callable[..., object]) -> None:
    token, _ = svc.create("secret", workspace="w")
    _, database = open_service()  # type: ignore[misc]
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_tokens")).all()
    assert len(rows) == 1
    flat = " ".join(str(v) for v in rows[0])
    assert token not in flat
    assert token[3:] not in flat
    assert hashlib.sha256(token.encode()).hexdigest() in flat
    # nor anywhere on disk: the data dir, a SQLite database file and its WAL
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f.name


@pytest.mark.parametrize("scopes", [["nope"], ["files", "nope"], ["FILES"], [""]])
def test_unknown_scope_is_bad_request(svc: TokenService, scopes: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        svc.create("x", scopes=scopes)
    assert info.value.param == "scope"
    assert svc.count() == 0


def test_every_category_scope_and_admin_are_valid(svc: TokenService) -> None:
    _, rec = svc.create("x", scopes=[*SCOPES, "admin", "*"])
    assert set(rec.scopes) == {*SCOPES, "admin", "*"}


@pytest.mark.parametrize(("kwargs", "param"), [({"name": "  "}, "name"), ({"name": "x", "expires_in": 0}, "expires_in"),
                                               ({"name": "x", "expires_in": -5}, "expires_in")])
def test_create_validation(svc: TokenService, kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        svc.create(**kwargs)  # type: ignore[arg-type]
    assert info.value.param == param
    assert svc.count() == 0


def test_list_and_count(svc: TokenService) -> None:
    svc.create("a")
    svc.create("b", workspace="other")
    assert svc.count() == 2
    assert sorted(r.name for r in svc.list()) == ["a", "b"]


# -- verify --------------------------------------------------------------------------------------------------


def test_verify_ok(svc: TokenService) -> None:
    token, rec = svc.create("ok", workspace="team", scopes=["files"])
    p = svc.verify(token)
    assert p == Principal(rec.id, rec.workspace_id, "team", frozenset({"files"}), None)
    assert p.allows("files")
    assert not p.allows("models")


def test_star_allows_everything(svc: TokenService) -> None:
    token, _ = svc.create("star")
    p = svc.verify(token)
    assert all(p.allows(scope) for scope in SCOPES)


@pytest.mark.parametrize("presented", ["", "garbage", "Bearer at_x", "at_short", "at_" + "A" * 43, "xt_" + "A" * 43,
                                       "at_" + "A" * 300])
def test_verify_invalid(svc: TokenService, presented: str) -> None:
    svc.create("real")
    assert unauthorized_code(lambda: svc.verify(presented)) == "INVALID_TOKEN"


def test_verify_a_near_miss_is_invalid(svc: TokenService) -> None:
    token, _ = svc.create("real")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert unauthorized_code(lambda: svc.verify(tampered)) == "INVALID_TOKEN"


def test_verify_revoked(svc: TokenService) -> None:
    token, rec = svc.create("r")
    svc.verify(token)
    svc.revoke(rec.id)
    assert unauthorized_code(lambda: svc.verify(token)) == "TOKEN_REVOKED"
    assert svc.verify_cached(token) is None


def test_verify_expired(svc: TokenService, clock: Any) -> None:
    token, _ = svc.create("e", expires_in=60)
    clock.advance(59)
    assert svc.verify(token).expires_at == int(clock.now) + 1
    clock.advance(1)  # expires_at <= now: expired
    assert unauthorized_code(lambda: svc.verify(token)) == "TOKEN_EXPIRED"


def test_cached_principal_expires_too(svc: TokenService, clock: Any) -> None:
    token, _ = svc.create("e", expires_in=10)
    svc.verify(token)
    assert svc.verify_cached(token) is not None
    clock.advance(11)  # still within the cache TTL (30 s): the cached entry itself knows the token expired
    assert unauthorized_code(lambda: svc.verify_cached(token)) == "TOKEN_EXPIRED"
    assert unauthorized_code(lambda: svc.verify(token)) == "TOKEN_EXPIRED"


def test_cache_entries_age_out_on_the_injected_clock(svc: TokenService, clock: Any) -> None:
    token, _ = svc.create("ttl")
    svc.verify(token)
    clock.advance(29)
    assert svc.verify_cached(token) is not None
    clock.advance(2)  # past the default 30 s TTL: the next check must go back to the database
    assert svc.verify_cached(token) is None


def test_revoke_unknown(svc: TokenService) -> None:
    with pytest.raises(NotFound) as info:
        svc.revoke("tok_nope")
    assert info.value.code == "TOKEN_NOT_FOUND"


# -- cache ---------------------------------------------------------------------------------------------------


def test_cache_miss_then_hit(svc: TokenService, open_service: Callable[..., tuple[TokenService, Database]]) -> None:
    token, _ = svc.create("c")
    assert svc.verify_cached(token) is None  # never verified yet
    principal = svc.verify(token)
    assert svc.verify_cached(token) == principal
    # Prove the hit does not read the database: remove the row behind the service's back.
    _, database = open_service()
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM api_tokens"))
    assert svc.verify_cached(token) == principal
    assert unauthorized_code(lambda: svc.verify(token)) == "INVALID_TOKEN"


def test_failed_verification_is_not_cached(svc: TokenService) -> None:
    token = "at_" + "Z" * 43
    unauthorized_code(lambda: svc.verify(token))
    assert svc.verify_cached(token) is None


def test_cache_is_bounded(open_service: Callable[..., tuple[TokenService, Database]], clock: Any) -> None:
    svc, _ = open_service(clock, cache_size=2)
    tokens = [svc.create(f"t{i}")[0] for i in range(3)]
    for token in tokens:
        svc.verify(token)
    assert svc.verify_cached(tokens[0]) is None  # least recently added is evicted
    assert svc.verify_cached(tokens[1]) is not None
    assert svc.verify_cached(tokens[2]) is not None


def test_revoke_in_same_instance_clears_cache(svc: TokenService) -> None:
    token, rec = svc.create("r")
    other, _ = svc.create("other")
    svc.verify(token)
    svc.verify(other)
    svc.revoke(rec.id)
    assert svc.verify_cached(token) is None
    assert svc.verify_cached(other) is None  # the whole cache is dropped
    assert svc.verify(other).token_id != rec.id


def test_revocation_by_another_instance_is_seen_immediately(
    open_service: Callable[..., tuple[TokenService, Database]], clock: Any,
) -> None:
    server, _ = open_service(clock)
    cli, _ = open_service(clock)  # e.g. the admin CLI: its own engine, its own cache, same data dir
    token, rec = server.create("live")
    assert server.verify(token).token_id == rec.id
    assert server.verify_cached(token) is not None
    cli.revoke(rec.id)
    assert server.verify_cached(token) is None
    assert unauthorized_code(lambda: server.verify(token)) == "TOKEN_REVOKED"


def test_revocation_by_cli_process_is_seen_immediately(
    open_service: Callable[..., tuple[TokenService, Database]], data_dir: Path, db: Database,
) -> None:
    server, _ = open_service()
    token, rec = server.create("live")
    server.verify(token)
    assert server.verify_cached(token) is not None
    proc = subprocess.run([sys.executable, "-m", "mistral_gateway", "--data-dir", str(data_dir), "tokens", "revoke",
                           rec.id], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "MISTRAL_GATEWAY_DATABASE_URL": db.url})
    assert proc.returncode == 0, proc.stderr
    assert server.verify_cached(token) is None
    assert unauthorized_code(lambda: server.verify(token)) == "TOKEN_REVOKED"


def test_revocation_landing_during_verify_is_not_cached(
    open_service: Callable[..., tuple[TokenService, Database]], data_dir: Path,
) -> None:
    """A revocation between reading the row and caching it: the stale principal must not be cached, even when
    another request has already synchronised the cache with the new epoch in between."""
    epoch = FileEpoch(data_dir / "tokens.epoch")
    hooks: list[Callable[[str], None]] = []

    class RacingRepository(TokenRepository):
        def by_hash(self, token_hash: str):  # type: ignore[no-untyped-def]
            record = super().by_hash(token_hash)
            for hook in hooks:
                hook(record.id)
            return record

    svc, _ = open_service(repo_cls=RacingRepository)
    token, _ = svc.create("race")

    def revoke_elsewhere(token_id: str) -> None:
        hooks.clear()
        svc._repo.revoke(token_id, now=1)  # the CLI, in another process: database row, then the epoch
        epoch.bump()
        assert svc.verify_cached("at_" + "q" * 43) is None  # a concurrent request notices the new epoch

    hooks.append(revoke_elsewhere)
    assert svc.verify(token) is not None  # read before the revocation: this answer is fine ...
    assert svc.verify_cached(token) is None  # ... but it must not be cached
    assert unauthorized_code(lambda: svc.verify(token)) == "TOKEN_REVOKED"


def test_cache_entries_have_a_time_to_live(open_service: Callable[..., tuple[TokenService, Database]]) -> None:
    """Replicas sharing only the database see revocations once their cache entries age out."""
    stale, _ = open_service(cache_seconds=-1)  # every entry is already too old
    token, _ = stale.create("ttl")
    stale.verify(token)
    assert stale.verify_cached(token) is None
    fresh, _ = open_service(cache_seconds=3600)
    fresh.verify(token)
    assert fresh.verify_cached(token) is not None


def test_the_largest_limits_the_api_accepts_are_stored(svc: TokenService) -> None:
    """PostgreSQL's INTEGER is 32-bit: a per-minute or concurrency limit the API accepts (up to 10**12) must fit
    its column on every backend, not fail the insert."""
    _, rec = svc.create("big", requests_per_minute=MAX_LIMIT_VALUE, tokens_per_minute=MAX_LIMIT_VALUE,
                        concurrent_requests=MAX_LIMIT_VALUE)
    [stored] = [r for r in svc.list() if r.id == rec.id]
    assert (stored.requests_per_minute, stored.tokens_per_minute, stored.concurrent_requests) == \
        (MAX_LIMIT_VALUE,) * 3
