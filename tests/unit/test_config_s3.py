"""config: the S3 blob store settings (README "Scale-out")."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mistral_gateway.config import Settings
from mistral_gateway.services.container import build_blob_store
from mistral_gateway.storage.blobs import LocalBlobStore
from mistral_gateway.storage.blobs_s3 import S3BlobStore


def test_local_is_the_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.blob_store == "local"
    assert isinstance(build_blob_store(settings), LocalBlobStore)


def test_s3_needs_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="s3_bucket"):
        Settings(data_dir=tmp_path, blob_store="s3")


def test_part_size_has_s3s_floor(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="s3_part_size"):
        Settings(data_dir=tmp_path, blob_store="s3", s3_bucket="b", s3_part_size=1024 * 1024)


def test_secret_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_GATEWAY_BLOB_STORE", "s3")
    monkeypatch.setenv("MISTRAL_GATEWAY_S3_BUCKET", "bucket")
    monkeypatch.setenv("MISTRAL_GATEWAY_S3_SECRET_ACCESS_KEY", "very-secret-value")
    settings = Settings(data_dir=tmp_path)
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(settings) + str(settings.model_dump()) + settings.model_dump_json()


def test_s3_store_is_built_from_settings(tmp_path: Path) -> None:
    # building makes a boto3 client but sends nothing: no server is needed here
    settings = Settings(data_dir=tmp_path, blob_store="s3", s3_bucket="bucket", s3_prefix="gw/",
                        s3_endpoint_url="http://127.0.0.1:9", s3_region="us-east-1", s3_access_key_id="id",
                        s3_secret_access_key="key")
    store = build_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.part_size) == ("bucket", "gw/", 8 * 1024 * 1024)
    assert store.client.meta.endpoint_url == "http://127.0.0.1:9"
