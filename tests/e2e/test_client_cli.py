"""The client commands (``chat``, ``embed``, ``files``, ``models``) as real subprocesses against live servers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mistral_gateway.client import FormatMemory
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.services.container import build_services
from support import CLI, LiveServer, clean_env, free_port

pytestmark = pytest.mark.e2e

MODELS = [
    ModelEntry(id="fake-chat", aliases=["mistral-small-latest", "magistral-small-latest"], engine="fake",
               capabilities=["completion_chat"]),
    ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[]),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # overrides conftest's: fake models
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=MODELS)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**clean_env(), "MISTRAL_GATEWAY_CLIENT_CACHE": str(tmp_path / "formats.json")}


def run(env: dict[str, str], *args: str, ok: bool = True, text: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=text, env=env, timeout=60, check=False)
    if ok:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_chat_plain_json_and_stream(live_server: LiveServer, token: str, env: dict[str, str]) -> None:
    target = ["--base-url", live_server.base_url, "--token", token]
    plain = run(env, "chat", "Hello there", "--max-tokens", "6", *target).stdout
    assert plain.strip() and "{" not in plain
    reply = json.loads(run(env, "chat", "Hello there", "--max-tokens", "6", "--json", *target).stdout)
    assert reply["object"] == "chat.completion" and reply["model"] == "mistral-small-latest"
    assert reply["choices"][0]["message"]["content"] == plain.strip()  # the fake engine is deterministic
    streamed = run(env, "chat", "Hello there", "--max-tokens", "6", "--stream", *target).stdout
    assert streamed.strip() == plain.strip() and streamed.endswith("\n")
    lines = run(env, "chat", "Hello there", "--max-tokens", "6", "--stream", "--json", *target).stdout.splitlines()
    chunks = [json.loads(line) for line in lines]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks) and len(chunks) >= 3
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == plain.strip()


def test_chat_with_a_reasoning_model_prints_the_answer(live_server: LiveServer, token: str,
                                                       env: dict[str, str]) -> None:
    target = ["--base-url", live_server.base_url, "--token", token, "--model", "magistral-small-latest"]
    reply = json.loads(run(env, "chat", "Hello there", "--max-tokens", "12", "--json", *target).stdout)
    thinking, text = reply["choices"][0]["message"]["content"]  # magistral-* think by default
    assert thinking["type"] == "thinking" and text["type"] == "text"
    plain = run(env, "chat", "Hello there", "--max-tokens", "12", *target).stdout
    assert plain.strip() == text["text"]  # the fake engine is deterministic
    streamed = run(env, "chat", "Hello there", "--max-tokens", "12", "--stream", *target).stdout
    assert streamed.strip() == text["text"]


def test_base_url_and_token_from_env_or_dev_token(live_server: LiveServer, token: str, env: dict[str, str],
                                                  tmp_path: Path) -> None:
    from_env = run({**env, "MISTRAL_GATEWAY_BASE_URL": live_server.base_url, "MISTRAL_GATEWAY_TOKEN": token},
                   "embed", "first text", "second text", "--model", "mistral-embed").stdout.splitlines()
    assert len(from_env) == 2
    assert from_env[0].startswith("0\t8 dims\t[") and from_env[1].endswith("second text")

    data_dir = tmp_path / "dev"
    data_dir.mkdir()
    (data_dir / "dev-token").write_text(token + "\n")
    out = json.loads(run(env, "embed", "x", "--json", "--base-url", live_server.base_url,
                         "--data-dir", str(data_dir)).stdout)
    assert out["object"] == "list" and len(out["data"]) == 1

    missing = run(env, "models", "--base-url", live_server.base_url, "--data-dir", str(tmp_path / "empty"), ok=False)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no API token")


def test_files_upload_list_download_rm(live_server: LiveServer, token: str, env: dict[str, str],
                                       tmp_path: Path) -> None:
    target = ["--base-url", live_server.base_url, "--token", token]
    source = tmp_path / "train.jsonl"
    source.write_bytes(b'{"text": "line"}\n' * 5000)
    up = run(env, "files", "upload", str(source), "--purpose", "batch", "--progress", *target)
    file_id = up.stdout.split()[1]
    assert up.stdout.startswith(f"uploaded {file_id}  train.jsonl  {source.stat().st_size} bytes  purpose batch")
    assert "upload train.jsonl [" in up.stderr and "100%" in up.stderr  # --progress draws on stderr
    quiet = run(env, "files", "upload", str(source), *target)
    assert quiet.stderr == ""  # stderr is not a terminal and --progress was not given

    table = run(env, "files", "list", "--purpose", "batch", *target).stdout.splitlines()
    assert table[0].split() == ["ID", "BYTES", "CREATED", "PURPOSE", "FILENAME"]
    assert len(table) == 2 and table[1].startswith(file_id) and table[1].endswith("train.jsonl")
    listing = json.loads(run(env, "files", "list", "--json", *target).stdout)
    assert listing["total"] == 2

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    down = run(env, "files", "download", file_id, "-o", str(out_dir), "--progress", *target)
    assert (out_dir / "train.jsonl").read_bytes() == source.read_bytes()
    assert down.stdout.strip() == f"downloaded {file_id} to {out_dir / 'train.jsonl'} ({source.stat().st_size} bytes)"
    assert "100%" in down.stderr
    raw = run(env, "files", "download", file_id, "-o", "-", *target, text=False)
    assert raw.stdout == source.read_bytes()

    assert run(env, "files", "rm", file_id, *target).stdout.strip() == f"deleted {file_id}"
    again = run(env, "files", "rm", file_id, *target, ok=False)
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: file '{file_id}' not found (HTTP 404, FILE_NOT_FOUND)"


def test_models_listing(live_server: LiveServer, token: str, env: dict[str, str]) -> None:
    target = ["--base-url", live_server.base_url, "--token", token]
    bare = run(env, "models", *target).stdout.splitlines()
    assert bare[0].split() == ["ID", "TYPE", "CONTEXT", "CAPABILITIES"]
    rows = {line.split()[0]: line.split() for line in bare[1:]}
    assert rows["mistral-small-latest"][1:3] == ["base", "32768"] and "completion_chat" in rows["fake-chat"][3]
    as_json = json.loads(run(env, "models", "list", "--json", *target).stdout)
    assert as_json["object"] == "list" and {m["id"] for m in as_json["data"]} == set(rows)


def test_files_through_a_server_with_only_the_old_format(tmp_path: Path, env: dict[str, str]) -> None:
    services = build_services(Settings(data_dir=tmp_path / "old", bootstrap_dev_token=False, models=MODELS,
                                       lowcode_new_format=False))
    token, _ = services.tokens.create("cli")
    server = LiveServer(services)
    server.start()
    try:
        target = ["--base-url", server.base_url + "/", "--token", token]  # a trailing slash is the same server
        source = tmp_path / "a.jsonl"
        source.write_bytes(b"{}\n")
        file_id = run(env, "files", "upload", str(source), *target).stdout.split()[1]
        assert FormatMemory(env["MISTRAL_GATEWAY_CLIENT_CACHE"]).get(server.base_url) is None  # nothing to learn yet
        out = tmp_path / "copy.jsonl"
        run(env, "files", "download", file_id, "-o", str(out), *target)
        assert out.read_bytes() == b"{}\n"
        assert FormatMemory(env["MISTRAL_GATEWAY_CLIENT_CACHE"]).get(server.base_url) == "old"
        assert run(env, "files", "rm", file_id, *target).stdout.strip() == f"deleted {file_id}"
    finally:
        server.stop()
        services.close()


def test_unreachable_server_is_a_clean_error(env: dict[str, str]) -> None:
    proc = run(env, "models", "--base-url", f"http://127.0.0.1:{free_port()}", "--token", "at_x", "--retries", "0",
               ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot reach http://127.0.0.1:") and "Traceback" not in proc.stderr
