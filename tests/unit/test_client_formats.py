"""The LowCodeAPI format decision flow and its memory, against httpx.MockTransport and a real cache file."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from mistral_gateway.client import AsyncClient, Client, FormatMemory, NotFoundError, default_cache_path
from mistral_gateway.client.formats import format_path
from mistral_gateway.client.transport import is_format_rejection

FILE = {"id": "f1", "object": "file", "bytes": 3, "created_at": 1, "filename": "a.jsonl", "purpose": "fine-tune",
        "sample_type": "instruct", "source": "upload"}


class FakeGateway:
    """Answers ``GET /mistralai/v1/files/{id}`` in the formats it is told to accept, like the real server does."""

    def __init__(self, *, new: bool = True, old: bool = True, refusal: str = "NEW_FORMAT_DISABLED") -> None:
        self.new, self.old, self.refusal = new, old, refusal
        self.seen: list[tuple[str, str, dict[str, list[str]]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        self.seen.append((request.method, request.url.path, query))
        assert query.pop("api_token") == ["tok"]
        path = request.url.path
        if path == "/mistralai/v1/files":
            return httpx.Response(200, json={"data": {"object": "list", "data": [FILE], "total": 1}})
        segment = path.removeprefix("/mistralai/v1/files/")
        if segment == "file_id":
            if not self.old:
                return self._refuse(400, "OLD_FORMAT_DISABLED")
            file_id = query["file_id"][0]
        else:
            if not self.new:
                return self._refuse(400 if self.refusal.endswith("DISABLED") else 404, self.refusal)
            file_id = segment
        if file_id != "f1":
            return self._refuse(404, "FILE_NOT_FOUND")
        return httpx.Response(200, json={"data": FILE})

    @staticmethod
    def _refuse(status: int, code: str) -> httpx.Response:
        if code == "PLAIN":
            return httpx.Response(status, text="<html>404 Not Found</html>")
        return httpx.Response(status, json={"data": {"error": {"message": code.lower(), "code": code}}})

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.seen]


def client_for(gateway: FakeGateway, cache: Path, **kw: object) -> Client:
    return Client("http://gw.test/", "tok", transport=httpx.MockTransport(gateway), cache_path=cache,
                  **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("refusal", ["NEW_FORMAT_DISABLED", "ROUTE_NOT_FOUND", "PLAIN"])
def test_falls_back_to_the_old_format_and_remembers_it(tmp_path: Path, refusal: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    gateway, cache = FakeGateway(new=False, refusal=refusal), tmp_path / "formats.json"
    with caplog.at_level(logging.DEBUG, logger="mistral_gateway.client"), client_for(gateway, cache) as client:
        assert client.files.retrieve("f1").filename == "a.jsonl"
        assert gateway.paths() == ["/mistralai/v1/files/f1", "/mistralai/v1/files/file_id"]
        assert gateway.seen[1][2]["file_id"] == ["f1"]
        assert client.url_format == "old"
        client.files.retrieve(file_id="f1")  # same client: straight to the old format
        assert gateway.paths()[2:] == ["/mistralai/v1/files/file_id"]
    assert "LowCodeAPI old format works for http://gw.test (provider mistralai)" in caplog.text
    assert FormatMemory(cache).get("http://gw.test") == "old"
    stored = json.loads(cache.read_text())
    assert stored["entries"]["http://gw.test"]["mistralai"]["format"] == "old"

    gateway.seen.clear()
    with client_for(gateway, cache) as again:  # a new client (another process) reads the file
        again.files.retrieve("f1")
    assert gateway.paths() == ["/mistralai/v1/files/file_id"]


def test_a_resource_404_is_raised_without_trying_the_other_format(tmp_path: Path) -> None:
    gateway = FakeGateway()
    with client_for(gateway, tmp_path / "f.json") as client, pytest.raises(NotFoundError) as info:
        client.files.retrieve("missing")
    assert info.value.code == "FILE_NOT_FOUND"
    assert gateway.paths() == ["/mistralai/v1/files/missing"]
    assert client.url_format == "new"  # the route answered in the new format: that is worth remembering


def test_a_remembered_old_format_that_stops_working_falls_back_to_new(tmp_path: Path) -> None:
    cache = tmp_path / "f.json"
    FormatMemory(cache).set("http://gw.test", "mistralai", "old")
    gateway = FakeGateway(old=False)
    with client_for(gateway, cache) as client:
        assert client.files.retrieve("f1").id == "f1"
        assert client.url_format == "new"
    assert gateway.paths() == ["/mistralai/v1/files/file_id", "/mistralai/v1/files/f1"]
    assert FormatMemory(cache).get("http://gw.test") == "new"


def test_operations_without_path_parameters_never_fall_back_or_touch_the_memory(tmp_path: Path) -> None:
    gateway, cache = FakeGateway(new=False), tmp_path / "f.json"
    with client_for(gateway, cache) as client:
        assert client.files.list().total == 1
    assert gateway.paths() == ["/mistralai/v1/files"]
    assert not cache.exists()


def test_remember_format_false_keeps_memory_in_the_object_only(tmp_path: Path) -> None:
    gateway, cache = FakeGateway(new=False), tmp_path / "f.json"
    with client_for(gateway, cache, remember_format=False) as client:
        client.files.retrieve("f1")
        client.files.retrieve("f1")
    assert len(gateway.seen) == 3 and not cache.exists()


def test_async_client_follows_the_same_flow(tmp_path: Path) -> None:
    gateway, cache = FakeGateway(new=False), tmp_path / "f.json"

    async def main() -> None:
        async with AsyncClient("http://gw.test", "tok", transport=httpx.MockTransport(gateway),
                               cache_path=cache) as client:
            assert (await client.files.retrieve("f1")).id == "f1"
            assert (await client.files.retrieve("f1")).id == "f1"

    asyncio.run(main())
    assert gateway.paths() == ["/mistralai/v1/files/f1", "/mistralai/v1/files/file_id", "/mistralai/v1/files/file_id"]
    assert FormatMemory(cache).get("http://gw.test") == "old"


def test_format_path() -> None:
    assert format_path("/v1/files/{file_id}/content", {"file_id": "a b/c"}, "new") == (
        "/mistralai/v1/files/a%20b%2Fc/content", {})
    assert format_path("/v1/libraries/{library_id}/documents/{document_id}", {"library_id": "L", "document_id": "D"},
                       "old") == ("/mistralai/v1/libraries/library_id/documents/document_id",
                                  {"library_id": "L", "document_id": "D"})


def test_format_rejections() -> None:
    def body(code: str) -> bytes:
        return json.dumps({"data": {"error": {"message": "x", "code": code}}}).encode()

    assert is_format_rejection(404, body("ROUTE_NOT_FOUND"))
    assert is_format_rejection(400, body("NEW_FORMAT_DISABLED"))
    assert is_format_rejection(404, b"Not Found")
    assert not is_format_rejection(404, body("FILE_NOT_FOUND"))
    assert not is_format_rejection(400, body("BAD_REQUEST"))
    assert not is_format_rejection(401, body("ROUTE_NOT_FOUND"))


def test_cache_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_GATEWAY_CLIENT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "mistral-gateway" / "formats.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "mistral-gateway" / "formats.json"
    monkeypatch.setenv("MISTRAL_GATEWAY_CLIENT_CACHE", str(tmp_path / "explicit.json"))
    assert default_cache_path() == tmp_path / "explicit.json"
    assert Client("http://x", "t").format_memory.path == tmp_path / "explicit.json"  # type: ignore[union-attr]


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"version": 1, "entries": []}',
                                     '{"entries": {"http://gw.test": {"mistralai": {"format": "weird"}}}}'])
def test_a_corrupt_cache_reads_as_empty_and_is_repaired_by_the_next_write(tmp_path: Path, content: str) -> None:
    cache = tmp_path / "f.json"
    cache.write_text(content)
    memory = FormatMemory(cache)
    assert memory.get("http://gw.test") is None
    assert memory.set("http://gw.test", "mistralai", "old")
    assert memory.get("http://gw.test") == "old"
    assert json.loads(cache.read_text())["version"] == 1


def test_an_unwritable_cache_does_not_break_calls(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    gateway = FakeGateway(new=False)
    with client_for(gateway, blocker / "sub" / "formats.json") as client:
        assert client.files.retrieve("f1").id == "f1"
        assert client.url_format == "old"  # still remembered in memory


_WRITER = """
import sys
from mistral_gateway.client import FormatMemory
memory = FormatMemory(sys.argv[1])
for i in range(int(sys.argv[3])):
    assert memory.set(f"http://{sys.argv[2]}-{i}", "mistralai", "old" if i % 2 else "new")
"""


def test_concurrent_processes_and_threads_never_lose_entries(tmp_path: Path) -> None:
    cache = tmp_path / "shared" / "formats.json"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(cache), f"proc{n}", "15"]) for n in range(3)]
    memory = FormatMemory(cache)
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for i in range(15):
                assert memory.set(f"http://{name}-{i}", "mistralai", "old" if i % 2 else "new")
                assert memory.get(f"http://{name}-{i}") in ("new", "old")  # never a half-written file
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert errors == []
    stored = memory.all()
    assert len(stored) == 6 * 15
    assert stored["http://proc2-7"] == {"mistralai": "old"} and stored["http://thread0-4"] == {"mistralai": "new"}
    assert not list(cache.parent.glob("*.tmp"))  # no temp files left behind
