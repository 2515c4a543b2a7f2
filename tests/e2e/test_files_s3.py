"""The files API end to end with ``blob_store = "s3"``: a live gateway on loopback storing on a real S3 API server
(moto, its own process on loopback), both started and stopped by the test."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mistralai.client import Mistral

from batch_support import wait_done
from mistral_gateway.config import Settings
from mistral_gateway.storage.blobs_s3 import S3BlobStore
from s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server
from support import fake_settings, serving

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as srv:
        yield srv


def s3_settings(data_dir: Path, srv: S3Server, bucket: str) -> Settings:
    return fake_settings(data_dir, blob_store="s3", s3_endpoint_url=srv.endpoint_url, s3_bucket=bucket,
                         s3_region=REGION, s3_prefix="gw/", s3_access_key_id=ACCESS_KEY,
                         s3_secret_access_key=SECRET_KEY, s3_part_size=5 * MB)


def bucket_keys(srv: S3Server, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in srv.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def test_upload_download_delete_through_s3(tmp_path: Path, server: S3Server) -> None:
    bucket = server.new_bucket()
    content = os.urandom(12 * MB + 3)  # three parts at the 5 MiB part size
    with serving(s3_settings(tmp_path, server, bucket)) as (live, services, token):
        assert isinstance(services.blobs, S3BlobStore)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=live.base_url, timeout=60) as http:
            r = http.post("/v1/files", headers=headers, files={"file": ("data.bin", content)},
                          data={"purpose": "ocr"})
            assert r.status_code == 200, r.text
            file_id = r.json()["id"]
            assert r.json()["bytes"] == len(content)
            keys = bucket_keys(server, bucket)
            assert len(keys) == 1 and keys[0].startswith("gw/")
            assert server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
            got = http.get(f"/v1/files/{file_id}/content", headers=headers)
            assert got.status_code == 200
            assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(content).hexdigest()
            low = http.get(f"/mistralai/v1/files/{file_id}/content", params={"api_token": token})
            assert low.status_code == 200 and low.content == content
            assert http.delete(f"/v1/files/{file_id}", headers=headers).status_code == 200
            assert bucket_keys(server, bucket) == []
            assert http.get(f"/v1/files/{file_id}/content", headers=headers).status_code == 404
    assert not (tmp_path / "blobs").exists()  # nothing went to the local directory


def test_refused_upload_leaves_no_object_or_pending_upload(tmp_path: Path, server: S3Server) -> None:
    bucket = server.new_bucket()
    settings = s3_settings(tmp_path, server, bucket).model_copy(update={"max_upload_bytes": 6 * MB})
    with serving(settings) as (live, _, token), httpx.Client(base_url=live.base_url, timeout=60) as http:
        r = http.post("/v1/files", headers={"Authorization": f"Bearer {token}"},
                      files={"file": ("big.bin", os.urandom(7 * MB))}, data={"purpose": "ocr"})
        assert r.status_code == 413, r.text
    assert bucket_keys(server, bucket) == []
    assert server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_storage_down_is_a_503_not_a_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a server of our own, stopped mid-test: the gateway starts against it, then loses it
    with s3_server() as srv:
        bucket = srv.new_bucket()
        settings = s3_settings(tmp_path, srv, bucket)
        with serving(settings) as (live, _, token), httpx.Client(base_url=live.base_url, timeout=60) as http:
            headers = {"Authorization": f"Bearer {token}"}
            r = http.post("/v1/files", headers=headers, files={"file": ("a.txt", b"hello")}, data={"purpose": "ocr"})
            assert r.status_code == 200, r.text
            file_id = r.json()["id"]
            srv.stop()
            got = http.get(f"/v1/files/{file_id}/content", headers=headers)
            assert got.status_code == 503, got.text
            assert got.json()["code"] == "BLOB_STORE_UNAVAILABLE" and "Retry-After" in got.headers
            up = http.post("/v1/files", headers=headers, files={"file": ("b.txt", b"x")}, data={"purpose": "ocr"})
            assert up.status_code == 503, up.text
            low = http.get(f"/mistralai/v1/files/{file_id}/content", params={"api_token": token})
            assert low.status_code == 503, low.text
    failures = [r.getMessage() for r in caplog.records if r.name == "mistral_gateway.storage.blobs_s3"]
    assert failures and all("get_object" in m or "put_object" in m for m in failures)
    assert SECRET_KEY not in caplog.text and token not in caplog.text


def test_batch_reads_its_input_and_writes_its_output_on_s3(tmp_path: Path, server: S3Server) -> None:
    bucket = server.new_bucket()
    lines = [{"custom_id": f"q{i}", "body": {"max_tokens": 3, "messages": [{"role": "user", "content": f"n {i}"}]}}
             for i in range(4)]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with serving(s3_settings(tmp_path, server, bucket)) as (live, _, token), \
            Mistral(api_key=token, server_url=live.base_url, timeout_ms=20_000) as sdk:
        uploaded = sdk.files.upload(file={"file_name": "in.jsonl", "content": content}, purpose="batch")
        job = sdk.batch.jobs.create(input_files=[uploaded.id], endpoint="/v1/chat/completions",
                                    model="ministral-3b-latest")
        done = wait_done(lambda i: sdk.batch.jobs.get(job_id=i).model_dump(), job.id)
        assert done["status"] == "SUCCESS" and done["succeeded_requests"] == 4
        output = [json.loads(x) for x in sdk.files.download(file_id=done["output_file"]).read().splitlines()]
        assert sorted(o["custom_id"] for o in output) == [f"q{i}" for i in range(4)]
        assert len(bucket_keys(server, bucket)) == 2  # the input and the output, both in the bucket
    assert not (tmp_path / "blobs").exists()


@pytest.mark.parametrize("presigned", [False, True])
def test_signed_url_download(tmp_path: Path, server: S3Server, presigned: bool) -> None:
    bucket = server.new_bucket()
    settings = s3_settings(tmp_path, server, bucket).model_copy(update={"s3_presigned_downloads": presigned})
    content = os.urandom(100_000)
    with serving(settings) as (live, _, token), httpx.Client(base_url=live.base_url, timeout=60) as http:
        headers = {"Authorization": f"Bearer {token}"}
        r = http.post("/v1/files", headers=headers, files={"file": ("naïve data.bin", content)},
                      data={"purpose": "ocr"})
        file_id = r.json()["id"]
        url = http.get(f"/v1/files/{file_id}/url", headers=headers, params={"expiry": 2}).json()["url"]
        first = http.get(url)  # no redirects followed
        if presigned:
            assert first.status_code == 307
            location = first.headers["location"]
            assert location.startswith(server.endpoint_url + f"/{bucket}/gw/")
            assert "Expires=" in location or "X-Amz-Expires=7200" in location
            assert SECRET_KEY not in location  # a signature, never the secret itself
            got = httpx.get(location, timeout=60)  # served by the S3 endpoint itself
        else:
            got = first
        assert got.status_code == 200, got.text
        assert got.content == content
        assert "attachment" in got.headers["content-disposition"]
        assert "na%C3%AFve" in got.headers["content-disposition"]
        tampered = http.get(url.replace("signature=", "signature=x"))
        assert tampered.status_code == 403  # checked here before any redirect
