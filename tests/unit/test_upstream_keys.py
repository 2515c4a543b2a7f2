"""Stored upstream keys: sealed with AES-GCM, bound to their upstream, loaded into the clients, never printed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from mistral_gateway.config import Settings
from mistral_gateway.errors import NotFound
from mistral_gateway.security.secretbox import SecretBox
from mistral_gateway.services.container import build_services
from mistral_gateway.services.upstream_keys import UpstreamKeyStore
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.secrets import UpstreamSecretRepository
from support import CLI, clean_env

UP = {"name": "cloud", "kind": "mistral", "allow_private_network": False}


def test_secretbox_round_trip_and_binding() -> None:
    box = SecretBox(b"k" * 32)
    sealed = box.seal("sk-123", "cloud")
    assert b"sk-123" not in sealed
    assert box.open(sealed, "cloud") == "sk-123"
    with pytest.raises(ValueError, match="cannot decrypt"):
        box.open(sealed, "other")  # moved to another upstream's row
    with pytest.raises(ValueError, match="cannot decrypt"):
        SecretBox(b"j" * 32).open(sealed, "cloud")
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(b"short")


def test_store_seals_in_the_database_and_services_use_it(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, upstreams=[UP], models=[],
                        bootstrap_dev_token=False)
    db = Database(settings.sqlalchemy_url)
    db.migrate()
    store = UpstreamKeyStore(UpstreamSecretRepository(db), settings)
    with pytest.raises(NotFound):
        store.set("nope", "sk-x")
    store.set("cloud", "sk-live-secret\n")
    with db.engine.connect() as conn:  # what the database holds, and on disk a SQLite file and its WAL
        raw = b"".join(bytes(row[0]) for row in conn.execute(text("SELECT sealed FROM upstream_secrets")))
    raw += b"".join(f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())
    assert b"sk-live-secret" not in raw
    assert store.load() == {"cloud": "sk-live-secret"}
    services = build_services(settings)
    try:
        assert services.router.upstreams["cloud"].has_key
    finally:
        services.close()
    assert store.delete("cloud") and not store.delete("cloud")


def test_cli_set_list_delete_never_prints_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('models = []\n[[upstreams]]\nname = "cloud"\nkind = "mistral"\n')
    base = [*CLI, "upstreams"]
    loc = ["--data-dir", str(tmp_path / "d"), "--config", str(config)]

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args, *loc], input=stdin, capture_output=True, text=True, env=clean_env(),
                              timeout=60)

    r = run("set-key", "cloud", stdin="sk-cli-secret\n")
    assert r.returncode == 0, r.stderr
    r = run("list")
    assert "cloud  mistral  https://api.mistral.ai  key: stored (encrypted)" in r.stdout
    assert "sk-cli-secret" not in r.stdout + r.stderr
    assert run("delete-key", "cloud").returncode == 0
    assert "key: none" in run("list").stdout
    assert run("delete-key", "cloud").returncode == 1
