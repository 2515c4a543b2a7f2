"""services.container: the object graph built from settings."""

from __future__ import annotations

from pathlib import Path

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.registry import Registry
from mistral_gateway.services.container import build_services
from mistral_gateway.storage.tokens import TokenRepository


def test_build_services_creates_data_dir_db_and_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "data", bootstrap_dev_token=False)
    svc = build_services(settings)
    try:
        assert (tmp_path / "new" / "data" / "gateway.db").is_file()
        assert (tmp_path / "new" / "data" / "signing.key").is_file()
        assert (tmp_path / "new" / "data" / "tokens.epoch").is_file()
        assert svc.blobs.root == settings.blob_dir
        assert len(svc.registry) == 55
        token, _ = svc.tokens.create("t")
        assert svc.tokens.verify(token).workspace == "default"
        assert svc.files.max_upload_bytes == settings.max_upload_bytes
    finally:
        svc.close()


def test_configured_secret_is_used_and_no_key_file_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, signing_secret="x" * 32, bootstrap_dev_token=False)
    svc = build_services(settings)
    try:
        assert not (tmp_path / "signing.key").exists()
    finally:
        svc.close()


def test_two_builds_share_the_generated_secret(tmp_path: Path) -> None:
    """Signed URLs made by one instance verify in another on the same data dir (e.g. after a restart)."""
    settings = Settings(data_dir=tmp_path, bootstrap_dev_token=False)
    a = build_services(settings)
    b = build_services(settings)
    try:
        assert a.files._signer.sign("f", "w", "1") == b.files._signer.sign("f", "w", "1")
    finally:
        a.close()
        b.close()


def test_models_and_limits_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bootstrap_dev_token=False, max_upload_bytes=123,
                        models=[ModelEntry(id="only-one", aliases=["alias-one"])])
    svc = build_services(settings, Registry.load())
    try:
        assert [c.id for c in svc.models.list("ws").data] == ["only-one", "alias-one"]
        assert svc.files.max_upload_bytes == 123
    finally:
        svc.close()


def test_without_migration_there_are_no_tables(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    svc = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False), migrate=False)
    try:
        assert inspect(svc.db.engine).get_table_names() == []
        svc.db.migrate()
        assert TokenRepository(svc.db).count() == 0
    finally:
        svc.close()
