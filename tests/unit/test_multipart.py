"""http.multipart: streaming multipart/form-data, the file part into a sink, every error aborting the sink."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from mistral_gateway.errors import BadRequest, PayloadTooLarge
from mistral_gateway.http.multipart import (
    MAX_FIELD_BYTES,
    MAX_PART_HEADER_BYTES,
    MAX_PARTS,
    MAX_TEXT_BYTES,
    OVERHEAD_BYTES,
    MultipartForm,
    read_multipart,
)
from mistral_gateway.security.signing import UrlSigner
from mistral_gateway.services.files import FileService
from mistral_gateway.storage.blobs import LocalBlobStore
from mistral_gateway.storage.files import FileRepository

BOUNDARY = "----gwBoundary7MA4YWxkTrZu0gW"


class RecordingSink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.aborted = False
        self.threads: set[int] = set()

    def write(self, data: bytes) -> None:
        self.threads.add(threading.get_ident())
        self.data += data

    def abort(self) -> None:
        self.aborted = True


class Opener:
    def __init__(self) -> None:
        self.sinks: list[RecordingSink] = []

    def __call__(self) -> RecordingSink:
        sink = RecordingSink()
        self.sinks.append(sink)
        return sink


def part(name: str, value: bytes | str, *, filename: str | None = None, ctype: str | None = None) -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    body = value.encode() if isinstance(value, str) else value
    return head.encode() + b"\r\n" + body + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def request(make_request: Any, raw: bytes, *, chunk: int = 0, content_type: str | None = None,
            length: bool = True) -> Any:
    headers = {"content-type": content_type if content_type is not None else
               f"multipart/form-data; boundary={BOUNDARY}"}
    if length:
        headers["content-length"] = str(len(raw))
    chunks = [raw[i:i + chunk] for i in range(0, len(raw), chunk)] if chunk else [raw]
    return make_request(chunks, headers=headers)


def parse(req: Any, opener: Any, max_file_bytes: int = 10 * 1024 * 1024) -> tuple[MultipartForm, Any]:
    return asyncio.run(read_multipart(req, file_field="file", open_sink=opener, max_file_bytes=max_file_bytes))


@pytest.mark.parametrize("chunk", [0, 1, 7, 64, 4096])
def test_fields_and_file(make_request: Any, chunk: int) -> None:
    payload = b'{"messages": []}\r\n--not-the-boundary\r\n\x00\xff' * 50
    raw = body(part("purpose", "fine-tune"), part("file", payload, filename="train.jsonl",
                                                   ctype="application/x-ndjson"), part("expiry", "24"))
    opener = Opener()
    form, sink = parse(request(make_request, raw, chunk=chunk), opener)
    assert len(opener.sinks) == 1
    assert sink is opener.sinks[0]
    assert bytes(sink.data) == payload
    assert not sink.aborted
    assert form.fields == {"purpose": ["fine-tune"], "expiry": ["24"]}
    assert form.get("purpose") == "fine-tune"
    assert form.get("missing") is None
    assert form.file is not None
    assert (form.file.field, form.file.filename, form.file.content_type) == ("file", "train.jsonl",
                                                                             "application/x-ndjson")


def test_file_bytes_written_off_the_event_loop_thread(make_request: Any) -> None:
    raw = body(part("file", b"x" * 10_000, filename="a.jsonl"))
    opener = Opener()
    parse(request(make_request, raw, chunk=1000), opener)
    assert opener.sinks[0].threads
    assert threading.get_ident() not in opener.sinks[0].threads


def test_no_file_part(make_request: Any) -> None:
    opener = Opener()
    form, sink = parse(request(make_request, body(part("purpose", "batch"))), opener)
    assert sink is None
    assert form.file is None
    assert opener.sinks == []
    assert form.get("purpose") == "batch"


def test_file_field_without_filename_is_a_text_field(make_request: Any) -> None:
    opener = Opener()
    form, sink = parse(request(make_request, body(part("file", "just text"))), opener)
    assert sink is None
    assert form.file is None
    assert form.get("file") == "just text"


def test_file_under_another_name_is_not_streamed(make_request: Any) -> None:
    opener = Opener()
    raw = body(part("attachment", "abc", filename="a.txt"), part("file", "real", filename="b.jsonl"))
    form, sink = parse(request(make_request, raw), opener)
    assert bytes(sink.data) == b"real"
    assert form.get("attachment") == "abc"
    assert form.file is not None
    assert form.file.filename == "b.jsonl"


def test_repeated_fields_keep_all_values(make_request: Any) -> None:
    raw = body(part("tag", "a"), part("tag", "b"), part("name", "Zoë ✓"))
    form, _ = parse(request(make_request, raw), Opener())
    assert form.fields["tag"] == ["a", "b"]
    assert form.get("tag") == "b"
    assert form.get("name") == "Zoë ✓"


def test_raw_filename_is_passed_through(make_request: Any) -> None:
    form, _ = parse(request(make_request, body(part("file", "x", filename="../../etc/passwd"))), Opener())
    assert form.file is not None
    assert form.file.filename == "../../etc/passwd"  # sanitising is the file service's job


def test_empty_file_part(make_request: Any) -> None:
    form, sink = parse(request(make_request, body(part("file", b"", filename="e.jsonl"))), Opener())
    assert form.file is not None
    assert bytes(sink.data) == b""
    assert not sink.aborted


@pytest.mark.parametrize("content_type", ["application/json", "", "text/plain; boundary=x",
                                          "application/x-www-form-urlencoded"])
def test_wrong_content_type(make_request: Any, content_type: str) -> None:
    opener = Opener()
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, body(part("file", "x", filename="a")), content_type=content_type), opener)
    assert info.value.code == "INVALID_CONTENT_TYPE"
    assert opener.sinks == []


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          "multipart/form-data; charset=utf-8"])
def test_missing_boundary(make_request: Any, content_type: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, body(part("file", "x", filename="a")), content_type=content_type), Opener())
    assert info.value.code == "MALFORMED_MULTIPART"


@pytest.mark.parametrize("cut", [
    lambda raw: raw[: -len(f"--{BOUNDARY}--\r\n")],  # everything but the closing boundary
    lambda raw: raw[: len(raw) // 2],  # in the middle of the file
    lambda raw: raw[: raw.index(b"\r\n\r\n") + 2],  # inside the part headers
])
def test_truncated_body(make_request: Any, cut: Any) -> None:
    raw = cut(body(part("purpose", "batch"), part("file", b"y" * 5000, filename="a.jsonl")))
    opener = Opener()
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, raw, chunk=512), opener)
    assert info.value.code == "MALFORMED_MULTIPART"
    assert all(sink.aborted for sink in opener.sinks)


def test_empty_body(make_request: Any) -> None:
    with pytest.raises(BadRequest):
        parse(request(make_request, b""), Opener())


def test_garbage_body(make_request: Any) -> None:
    opener = Opener()
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, b"this is not multipart at all\r\n" * 10), opener)
    assert info.value.code == "MALFORMED_MULTIPART"


def test_two_file_parts(make_request: Any) -> None:
    raw = body(part("file", "one", filename="a.jsonl"), part("file", "two", filename="b.jsonl"))
    opener = Opener()
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, raw), opener)
    assert info.value.status == 400
    assert info.value.code == "MALFORMED_MULTIPART"
    assert len(opener.sinks) == 1
    assert opener.sinks[0].aborted


def test_oversize_streamed(make_request: Any) -> None:
    raw = body(part("file", b"z" * (OVERHEAD_BYTES + 2048), filename="big.jsonl"))
    opener = Opener()
    with pytest.raises(PayloadTooLarge) as info:
        parse(request(make_request, raw, chunk=64 * 1024, length=False), opener, max_file_bytes=1024)
    assert info.value.status == 413
    assert info.value.code == "FILE_TOO_LARGE"
    assert len(opener.sinks) == 1
    assert opener.sinks[0].aborted
    assert len(opener.sinks[0].data) <= OVERHEAD_BYTES + 1024


def test_oversize_declared_length(make_request: Any) -> None:
    raw = body(part("file", b"z" * 10, filename="a.jsonl"))
    req = make_request([raw], headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}",
                                       "content-length": str(OVERHEAD_BYTES + 1025)})
    opener = Opener()
    with pytest.raises(PayloadTooLarge) as info:
        parse(req, opener, max_file_bytes=1024)
    assert info.value.code == "FILE_TOO_LARGE"
    assert opener.sinks == []  # rejected before anything was opened


def test_oversize_field(make_request: Any) -> None:
    raw = body(part("file", "ok", filename="a.jsonl"), part("purpose", "p" * (MAX_FIELD_BYTES + 1)))
    opener = Opener()
    with pytest.raises(PayloadTooLarge) as info:
        parse(request(make_request, raw, chunk=8192), opener)
    assert info.value.status == 413
    assert opener.sinks[0].aborted


def test_field_at_the_cap_is_fine(make_request: Any) -> None:
    form, _ = parse(request(make_request, body(part("purpose", "p" * MAX_FIELD_BYTES))), Opener())
    assert len(form.get("purpose") or "") == MAX_FIELD_BYTES


def test_too_many_fields(make_request: Any) -> None:
    raw = body(*(part(f"f{i}", "v") for i in range(MAX_PARTS + 1)))
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, raw), Opener())
    assert info.value.code == "MALFORMED_MULTIPART"


def test_repeated_names_count_as_parts(make_request: Any) -> None:
    """3,000 'purpose' parts used to pass the limit (it counted distinct names) and pile up in memory."""
    raw = body(part("file", "ok", filename="a.jsonl"), *(part("purpose", "p" * 100) for _ in range(3000)))
    opener = Opener()
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, raw, chunk=64 * 1024), opener)
    assert info.value.code == "MALFORMED_MULTIPART" and "parts" in info.value.message
    assert opener.sinks[0].aborted


def test_text_fields_have_a_total_cap(make_request: Any) -> None:
    count = MAX_TEXT_BYTES // MAX_FIELD_BYTES + 1
    raw = body(*(part("purpose", "p" * MAX_FIELD_BYTES) for _ in range(count)))
    with pytest.raises(PayloadTooLarge) as info:
        parse(request(make_request, raw, chunk=8192), Opener())
    assert "in all" in info.value.message


def test_part_headers_have_a_cap(make_request: Any) -> None:
    pad = b"".join(b"X-Pad-%d: " % i + b"x" * 3000 + b"\r\n" for i in range(MAX_PART_HEADER_BYTES // 3000 + 1))
    raw = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n".encode() + pad
           + b"\r\nbatch\r\n" + f"--{BOUNDARY}--\r\n".encode())
    with pytest.raises(BadRequest) as info:
        parse(request(make_request, raw, chunk=1000), Opener())
    assert f"exceed {MAX_PART_HEADER_BYTES} bytes" in info.value.message


def test_errors_never_echo_a_large_value_or_name(make_request: Any) -> None:
    name = "n" * 1000
    raw = body(part(name, "secret-" + "v" * (MAX_FIELD_BYTES + 10)))
    with pytest.raises(PayloadTooLarge) as info:
        parse(request(make_request, raw, chunk=1024), Opener())
    assert len(info.value.message) < 200 and "secret" not in info.value.message


def test_sink_error_aborts_and_leaves_no_blob(make_request: Any, tmp_path: Path, db: Any) -> None:
    """With the real upload sink: the file limit is enforced while streaming and the partial blob is removed."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    files = FileService(FileRepository(db), blobs, UrlSigner(b"k" * 32), max_upload_bytes=4096)
    raw = body(part("purpose", "fine-tune"), part("file", b"q" * 10_000, filename="a.jsonl"))
    with pytest.raises(PayloadTooLarge) as info:
        asyncio.run(read_multipart(request(make_request, raw, chunk=1000), file_field="file",
                                   open_sink=files.open_upload, max_file_bytes=4096))
    assert info.value.code == "FILE_TOO_LARGE"
    assert [p for p in blobs.root.rglob("*") if p.is_file()] == []


def test_rfc5987_filename_is_decoded(make_request: Any) -> None:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename*=UTF-8''na%C3%AFve%20data.jsonl\r\n\r\n").encode()
    opener = Opener()
    form, sink = parse(request(make_request, body(head + b'{"a": 1}\n\r\n')), opener)
    assert form.file is not None
    assert form.file.filename == "naïve data.jsonl"
    assert bytes(sink.data) == b'{"a": 1}\n'


def test_a_file_part_without_filename_when_the_operation_allows_it(make_request: Any) -> None:
    opener = Opener()
    req = request(make_request, body(part("model", "m"), part("file", b"RIFF....WAVE")))
    form, sink = asyncio.run(read_multipart(req, file_field="file", open_sink=opener, max_file_bytes=1024,
                                            file_needs_name=False))
    assert sink is opener.sinks[0] and bytes(opener.sinks[0].data) == b"RIFF....WAVE"
    assert form.file is not None and form.file.filename is None and form.get("model") == "m"


def test_the_part_limit_is_the_operations(make_request: Any) -> None:
    parts = [part("context_bias", f"w{i}") for i in range(100)]
    form, _ = asyncio.run(read_multipart(request(make_request, body(*parts)), file_field="file", open_sink=Opener(),
                                         max_file_bytes=1024, max_parts=100))
    assert len(form.fields["context_bias"]) == 100
    with pytest.raises(BadRequest, match=r"too many form parts \(at most 99\)"):
        asyncio.run(read_multipart(request(make_request, body(*parts)), file_field="file", open_sink=Opener(),
                                   max_file_bytes=1024, max_parts=99))
