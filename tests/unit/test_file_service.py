"""services.files: uploads streamed into the blob store, metadata in SQLite, downloads and signed URLs."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from mistral_gateway.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from mistral_gateway.protocol.files import FILE_PURPOSES, ListFilesQuery, UploadFileOut
from mistral_gateway.security.signing import UrlSigner
from mistral_gateway.services.files import FileService
from mistral_gateway.storage.blobs import LocalBlobStore
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.tokens import TokenRepository

LIMIT = 64 * 1024
INSTRUCT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def svc(db: Database, blobs: LocalBlobStore, clock: Any) -> FileService:
    return FileService(FileRepository(db), blobs, UrlSigner(b"k" * 32), max_upload_bytes=LIMIT,
                       signed_url_max_hours=168, clock=clock)


@pytest.fixture
def ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("a", now=1).id


@pytest.fixture
def other_ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("b", now=1).id


def upload(svc: FileService, ws: str, data: bytes | Iterable[bytes] = INSTRUCT, *, filename: str | None = "train.jsonl",
           purpose: str | None = None, **kw: Any) -> UploadFileOut:
    sink = svc.open_upload()
    for chunk in [data] if isinstance(data, bytes) else data:
        sink.write(chunk)
    return svc.finish_upload(ws, sink, filename=filename, purpose=purpose, **kw)


def stored(blobs: LocalBlobStore) -> list[Path]:
    """Committed blobs and in-progress parts alike: after a failed upload both must be empty."""
    return [p for p in blobs.root.rglob("*") if p.is_file()]


def bad_request(fn: Any, *args: Any, **kw: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        fn(*args, **kw)
    assert info.value.status == 400
    return info.value


# -- upload ----------------------------------------------------------------------------------------------


def test_upload_record(svc: FileService, ws: str, clock: Any, blobs: LocalBlobStore) -> None:
    out = upload(svc, ws, INSTRUCT * 3)
    assert uuid.UUID(out.id)
    assert out.object == "file"
    assert out.bytes == len(INSTRUCT) * 3
    assert out.created_at == int(clock.now)
    assert out.filename == "train.jsonl"
    assert out.purpose == "fine-tune"  # the default
    assert out.sample_type == "instruct"
    assert out.source == "upload"
    assert out.num_lines == 3
    assert out.mimetype == "application/jsonl"
    assert out.signature == hashlib.sha256(INSTRUCT * 3).hexdigest()[:16]
    assert out.expires_at is None
    assert out.visibility == "workspace"
    assert len(stored(blobs)) == 1


@pytest.mark.parametrize("purpose", FILE_PURPOSES)
def test_every_purpose(svc: FileService, ws: str, purpose: str) -> None:
    name = "train.jsonl" if purpose == "fine-tune" else "doc.pdf"
    out = upload(svc, ws, INSTRUCT, filename=name, purpose=purpose)
    assert out.purpose == purpose
    assert svc.retrieve(ws, out.id).purpose == purpose


@pytest.mark.parametrize("purpose", [None, "", " fine-tune "])
def test_default_and_trimmed_purpose(svc: FileService, ws: str, purpose: str | None) -> None:
    assert upload(svc, ws, purpose=purpose).purpose == "fine-tune"


@pytest.mark.parametrize("purpose", ["finetune", "FINE-TUNE", "assistants", "   "])
def test_invalid_purpose(svc: FileService, ws: str, blobs: LocalBlobStore, purpose: str) -> None:
    err = bad_request(upload, svc, ws, purpose=purpose)
    assert err.code == "INVALID_PURPOSE"
    assert err.param == "purpose"
    assert stored(blobs) == []


@pytest.mark.parametrize("name", ["train.json", "train.txt", "train", "train.jsonl.gz"])
def test_fine_tune_requires_jsonl(svc: FileService, ws: str, blobs: LocalBlobStore, name: str) -> None:
    err = bad_request(upload, svc, ws, filename=name)
    assert err.code == "INVALID_FILE_TYPE"
    assert stored(blobs) == []
    assert svc.list(ws, ListFilesQuery()).data == []


def test_jsonl_extension_is_case_insensitive(svc: FileService, ws: str) -> None:
    out = upload(svc, ws, filename="TRAIN.JSONL")
    assert out.num_lines == 1
    assert out.mimetype == "application/jsonl"


def test_non_jsonl_allowed_for_other_purposes(svc: FileService, ws: str) -> None:
    out = upload(svc, ws, b"%PDF-1.4 ...", filename="scan.pdf", purpose="ocr")
    assert out.mimetype == "application/pdf"
    assert out.num_lines is None
    assert out.sample_type == "instruct"
    out = upload(svc, ws, b"\x00\x01", filename="blob.unknownext", purpose="audio")
    assert out.mimetype == "application/octet-stream"


def test_empty_file_rejected(svc: FileService, ws: str, blobs: LocalBlobStore) -> None:
    err = bad_request(upload, svc, ws, b"")
    assert err.code == "EMPTY_FILE"
    assert stored(blobs) == []


def test_size_limit(svc: FileService, ws: str, blobs: LocalBlobStore) -> None:
    sink = svc.open_upload()
    sink.write(b"x" * (LIMIT - 10))
    with pytest.raises(PayloadTooLarge) as info:
        sink.write(b"y" * 11)
    assert info.value.status == 413
    assert info.value.code == "FILE_TOO_LARGE"
    assert sink.size == LIMIT - 10  # the chunk over the limit was not written
    sink.abort()  # what the multipart reader does on any error
    assert stored(blobs) == []


def test_size_exactly_at_limit(svc: FileService, ws: str) -> None:
    line = b'{"text": "' + b"a" * 100 + b'"}\n'
    data = (line * (LIMIT // len(line) + 1))[:LIMIT]
    out = upload(svc, ws, [data[: LIMIT // 2], data[LIMIT // 2:]])
    assert out.bytes == LIMIT


@pytest.mark.parametrize(("chunks", "lines"), [
    ([b"a\nb\n"], 2),
    ([b"a\nb"], 2),
    ([b"a"], 1),
    ([b"\n"], 1),
    ([b"a\n", b"b"], 2),
    ([b"a", b"\n", b"b", b"\n"], 2),
    ([b"a\nb", b""], 2),
    ([b"a\n", b"", b"b\n\n"], 3),
])
def test_num_lines(svc: FileService, ws: str, chunks: list[bytes], lines: int) -> None:
    assert upload(svc, ws, chunks).num_lines == lines


@pytest.mark.parametrize(("purpose", "filename", "first_line", "expected"), [
    ("fine-tune", "t.jsonl", INSTRUCT, "instruct"),
    ("fine-tune", "t.jsonl", b'{"text": "raw pretraining text"}\n', "pretrain"),
    ("fine-tune", "t.jsonl", b'{"text": "x", "messages": []}\n', "instruct"),
    ("fine-tune", "t.jsonl", b"not json at all\n", "instruct"),
    ("fine-tune", "t.jsonl", b'["text"]\n', "instruct"),
    ("batch", "b.jsonl", b'{"custom_id": "1", "body": {}}\n', "batch_request"),
    ("batch", "b.jsonl", b'{"text": "x"}\n', "batch_request"),
    ("ocr", "t.jsonl", b'{"text": "x"}\n', "instruct"),
])
def test_sample_type(svc: FileService, ws: str, purpose: str, filename: str, first_line: bytes,
                     expected: str) -> None:
    out = upload(svc, ws, first_line + INSTRUCT, filename=filename, purpose=purpose)
    assert out.sample_type == expected


def test_pretrain_detected_across_chunks(svc: FileService, ws: str) -> None:
    out = upload(svc, ws, [b'{"te', b'xt": "split"}', b"\n", INSTRUCT])
    assert out.sample_type == "pretrain"


@pytest.mark.parametrize(("given", "expected"), [
    ("../../etc/train.jsonl", "train.jsonl"),
    ("/abs/path/train.jsonl", "train.jsonl"),
    ("C:\\Users\\me\\train.jsonl", "train.jsonl"),
    ("..\\..\\train.jsonl", "train.jsonl"),
    ("  spaced.jsonl  ", "spaced.jsonl"),
    ("tr\x00ai\nn\x1b.jsonl", "train.jsonl"),
    ("e\u0301te\u0301.jsonl", "\u00e9t\u00e9.jsonl"),  # NFC
    ("données.jsonl", "données.jsonl"),
])
def test_filename_sanitised(svc: FileService, ws: str, given: str, expected: str) -> None:
    out = upload(svc, ws, filename=given)
    assert out.filename == expected
    assert svc.download(ws, out.id).filename == expected


@pytest.mark.parametrize("given", [None, "", "   ", "dir/", "..", ".", "a/..", "\x00\x01"])
def test_missing_filename(svc: FileService, ws: str, blobs: LocalBlobStore, given: str | None) -> None:
    err = bad_request(upload, svc, ws, filename=given)
    assert err.code == "MISSING_FILENAME"
    assert stored(blobs) == []


def test_long_filename_truncated(svc: FileService, ws: str) -> None:
    out = upload(svc, ws, b"x", filename="a" * 400 + ".pdf", purpose="ocr")
    assert len(out.filename) == 255
    assert out.filename.endswith("a.pdf")


def test_long_jsonl_filename_keeps_its_extension_for_fine_tuning(svc: FileService, ws: str) -> None:
    out = upload(svc, ws, b'{"messages": []}\n', filename="b" * 400 + ".jsonl", purpose="fine-tune")
    assert len(out.filename) == 255
    assert out.filename.endswith(".jsonl")


def test_expiry(svc: FileService, ws: str, clock: Any) -> None:
    out = upload(svc, ws, expiry_hours=2)
    assert out.expires_at == int(clock.now) + 7200
    assert svc.retrieve(ws, out.id).id == out.id
    clock.advance(7200)
    with pytest.raises(NotFound):
        svc.retrieve(ws, out.id)
    with pytest.raises(NotFound):
        svc.download(ws, out.id)
    assert svc.list(ws, ListFilesQuery()).total == 0


@pytest.mark.parametrize("hours", [0, -1])
def test_invalid_expiry(svc: FileService, ws: str, blobs: LocalBlobStore, hours: int) -> None:
    assert bad_request(upload, svc, ws, expiry_hours=hours).param == "expiry"
    assert stored(blobs) == []


def test_visibility(svc: FileService, ws: str, blobs: LocalBlobStore) -> None:
    assert upload(svc, ws, visibility="user").visibility == "user"
    assert upload(svc, ws, visibility="").visibility == "workspace"
    before = len(stored(blobs))
    assert bad_request(upload, svc, ws, visibility="public").param == "visibility"
    assert len(stored(blobs)) == before


def test_database_failure_removes_the_blob(svc: FileService, blobs: LocalBlobStore) -> None:
    with pytest.raises(IntegrityError):  # no such workspace: the row violates its foreign key
        upload(svc, "no-such-workspace")
    assert stored(blobs) == []


# -- list / retrieve / delete / download -------------------------------------------------------------


def test_retrieve(svc: FileService, ws: str) -> None:
    out = upload(svc, ws)
    got = svc.retrieve(ws, out.id)
    assert got.deleted is False
    assert got.model_dump(exclude={"deleted"}) == out.model_dump()


def test_list_filters_and_pages(svc: FileService, ws: str, clock: Any) -> None:
    ids = []
    for i in range(5):
        clock.advance(1)
        ids.append(upload(svc, ws, filename=f"f{i}.jsonl").id)
    clock.advance(1)
    batch = upload(svc, ws, b'{"custom_id": "1"}\n', filename="requests.jsonl", purpose="batch").id
    listing = svc.list(ws, ListFilesQuery())
    assert listing.object == "list"
    assert listing.total == 6
    assert [f.id for f in listing.data] == [batch, *reversed(ids)]
    page = svc.list(ws, ListFilesQuery(page=1, page_size=2))
    assert [f.id for f in page.data] == [ids[3], ids[2]]
    assert page.total == 6
    assert svc.list(ws, ListFilesQuery(include_total=False)).total is None
    assert [f.id for f in svc.list(ws, ListFilesQuery(purpose="batch")).data] == [batch]
    assert [f.id for f in svc.list(ws, ListFilesQuery(sample_type=["batch_request"])).data] == [batch]
    assert svc.list(ws, ListFilesQuery(sample_type=["pretrain"])).data == []
    assert len(svc.list(ws, ListFilesQuery(source=["upload"])).data) == 6
    assert svc.list(ws, ListFilesQuery(source=["mistral"])).data == []
    assert [f.id for f in svc.list(ws, ListFilesQuery(search="f3")).data] == [ids[3]]
    assert svc.list(ws, ListFilesQuery(search="")).total == 6
    assert len(svc.list(ws, ListFilesQuery(mimetypes=["application/jsonl"])).data) == 6


def test_pages_far_past_the_end_are_empty(svc: FileService, ws: str) -> None:
    upload(svc, ws)
    listing = svc.list(ws, ListFilesQuery(page=10**6, page_size=1000))
    assert listing.data == []
    assert listing.total == 1


@pytest.mark.parametrize("page", [10**6 + 1, 10**17, 10**30])
def test_pages_have_a_range(page: int) -> None:
    with pytest.raises(ValidationError):  # an OFFSET past int64 was a 500 from SQLite
        ListFilesQuery(page=page, page_size=1000)


def test_delete(svc: FileService, ws: str, blobs: LocalBlobStore) -> None:
    out = upload(svc, ws)
    assert len(stored(blobs)) == 1
    deleted = svc.delete(ws, out.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (out.id, "file", True)
    assert stored(blobs) == []
    with pytest.raises(NotFound):
        svc.retrieve(ws, out.id)
    with pytest.raises(NotFound):
        svc.delete(ws, out.id)


def test_download(svc: FileService, ws: str) -> None:
    data = b"".join(json.dumps({"text": "x" * i}).encode() + b"\n" for i in range(300))
    out = upload(svc, ws, [data[:1000], data[1000:]], filename="big.jsonl")
    dl = svc.download(ws, out.id)
    assert dl.filename == "big.jsonl"
    assert dl.size == len(data)
    assert b"".join(dl.chunks) == data


def test_download_with_missing_blob(svc: FileService, ws: str, blobs: LocalBlobStore) -> None:
    out = upload(svc, ws)
    for p in stored(blobs):
        p.unlink()
    with pytest.raises(NotFound) as info:
        svc.download(ws, out.id)
    assert info.value.code == "FILE_CONTENT_MISSING"


def test_workspace_isolation(svc: FileService, ws: str, other_ws: str, blobs: LocalBlobStore) -> None:
    out = upload(svc, ws)
    for call in (svc.retrieve, svc.delete, svc.download):
        with pytest.raises(NotFound) as info:
            call(other_ws, out.id)
        assert info.value.code == "FILE_NOT_FOUND"
    with pytest.raises(NotFound):
        svc.signed_url(other_ws, out.id, 1, "http://h")
    assert svc.list(other_ws, ListFilesQuery()).data == []
    assert svc.retrieve(ws, out.id).id == out.id  # untouched by the other workspace's delete
    assert len(stored(blobs)) == 1


@pytest.mark.parametrize("bad_id", ["nope", "", "123", "../etc/passwd", "file_id", "g" * 32])
def test_non_uuid_id_is_not_found(svc: FileService, ws: str, bad_id: str) -> None:
    for call in (svc.retrieve, svc.delete, svc.download):
        with pytest.raises(NotFound) as info:
            call(ws, bad_id)
        assert info.value.code == "FILE_NOT_FOUND"
        assert info.value.param == "file_id"


def test_uuid_spellings_resolve_to_the_file(svc: FileService, ws: str) -> None:
    out = upload(svc, ws)
    assert svc.retrieve(ws, out.id.upper()).id == out.id
    assert svc.retrieve(ws, uuid.UUID(out.id).hex).id == out.id


def test_unknown_uuid_is_not_found(svc: FileService, ws: str) -> None:
    with pytest.raises(NotFound):
        svc.retrieve(ws, str(uuid.uuid4()))


# -- signed URLs ------------------------------------------------------------------------------------------


def signed_parts(url: str) -> tuple[str, str, str, str]:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return parts.path.rsplit("/", 1)[-1], q["ws"], q["expires"], q["signature"]


def test_signed_url_roundtrip(svc: FileService, ws: str, clock: Any) -> None:
    out = upload(svc, ws)
    url = svc.signed_url(ws, out.id, 3, "https://gw.example/").url
    assert url.startswith(f"https://gw.example/files/signed/{out.id}?")
    file_id, wsp, expires, sig = signed_parts(url)
    assert (file_id, wsp) == (out.id, ws)
    assert int(expires) == int(clock.now) + 3 * 3600
    dl = svc.download_signed(file_id, wsp, expires, sig)
    assert b"".join(dl.chunks) == INSTRUCT
    clock.advance(3 * 3600 - 1)
    assert b"".join(svc.download_signed(file_id, wsp, expires, sig).chunks) == INSTRUCT


def test_signed_url_expired(svc: FileService, ws: str, clock: Any) -> None:
    out = upload(svc, ws)
    parts = signed_parts(svc.signed_url(ws, out.id, 1, "http://h").url)
    clock.advance(3600)
    with pytest.raises(Forbidden) as info:
        svc.download_signed(*parts)
    assert info.value.status == 403
    assert info.value.code == "SIGNED_URL_EXPIRED"


def test_signed_url_tampered(svc: FileService, ws: str, other_ws: str) -> None:
    out = upload(svc, ws)
    other = upload(svc, ws, filename="other.jsonl")
    file_id, wsp, expires, sig = signed_parts(svc.signed_url(ws, out.id, 1, "http://h").url)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for args in [
        (file_id, wsp, expires, flipped),
        (file_id, wsp, expires, ""),
        (file_id, wsp, str(int(expires) + 3600), sig),  # extending the expiry
        (file_id, wsp, expires + "0", sig),
        (file_id, wsp, f" {expires}", sig),
        (file_id, wsp, "-1", sig),
        (file_id, wsp, "", sig),
        (file_id, other_ws, expires, sig),  # another workspace
        (other.id, wsp, expires, sig),  # another file
    ]:
        with pytest.raises(Forbidden) as info:
            svc.download_signed(*args)
        assert info.value.code == "INVALID_SIGNATURE", args


def test_signed_url_of_deleted_file(svc: FileService, ws: str) -> None:
    out = upload(svc, ws)
    parts = signed_parts(svc.signed_url(ws, out.id, 1, "http://h").url)
    svc.delete(ws, out.id)
    with pytest.raises(NotFound):
        svc.download_signed(*parts)


@pytest.mark.parametrize(("hours", "ok"), [(0, False), (1, True), (168, True), (169, False), (-3, False)])
def test_signed_url_expiry_bounds(svc: FileService, ws: str, hours: int, ok: bool) -> None:
    out = upload(svc, ws)
    if ok:
        assert "signature=" in svc.signed_url(ws, out.id, hours, "http://h").url
    else:
        assert bad_request(svc.signed_url, ws, out.id, hours, "http://h").param == "expiry"


def test_signed_url_max_hours_is_configurable(db: Database, blobs: LocalBlobStore, ws: str, clock: Any) -> None:
    svc = FileService(FileRepository(db), blobs, UrlSigner(b"k" * 32), max_upload_bytes=LIMIT,
                      signed_url_max_hours=2, clock=clock)
    out = upload(svc, ws)
    svc.signed_url(ws, out.id, 2, "http://h")
    bad_request(svc.signed_url, ws, out.id, 3, "http://h")


def test_signed_url_unknown_file(svc: FileService, ws: str) -> None:
    with pytest.raises(NotFound):
        svc.signed_url(ws, str(uuid.uuid4()), 1, "http://h")
