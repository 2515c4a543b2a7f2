"""The marks guard (tests/marks_guard.py): a test that starts a server process without ``e2e`` or loads a real model
without ``slow`` fails, before the server or model starts; marked tests run as usual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from marks_guard import server_command

TESTS = Path(__file__).resolve().parents[1]

INNER = '''
import subprocess
import sys

import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines import sentence

# what the guard reads as ``mistral_gateway serve``; what runs is ``pass`` (no CLI import: this test stays quick)
SERVE = [sys.executable, "-c", "pass", "mistral_gateway", "serve"]


def test_unmarked_server():
    subprocess.run(SERVE, capture_output=True)


@pytest.mark.e2e
def test_marked_server():
    assert subprocess.run(SERVE, capture_output=True).returncode == 0


def test_unmarked_model(tmp_path):
    try:  # the guard's failure is not an Exception: a broad handler does not hide it
        sentence.load(ModelEntry(id="m", engine="sentence-transformers"), tmp_path, Settings(data_dir=tmp_path))
    except Exception:
        pass


def test_plain_subprocess_is_fine():
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).returncode == 0
'''


def test_server_commands_are_recognised() -> None:
    assert server_command([sys.executable, "-m", "mistral_gateway.engines.llama_worker"]) == \
        "a llama.cpp worker process"
    assert "CLI server" in (server_command(["/x/.venv/bin/mistral-gateway", "serve", "--port", "1"]) or "")
    assert "CLI server" in (server_command([sys.executable, "-m", "mistral_gateway", "--data-dir", "d", "worker"])
                            or "")
    assert server_command([sys.executable, "-m", "mistral_gateway", "tokens", "revoke", "x"]) is None
    assert server_command(["mistral-gateway", "--config", "serve", "tokens", "create", "--name", "worker"]) is None
    assert server_command(["git", "status"]) is None
    assert server_command("echo serve") is None


def test_unmarked_tests_fail_and_marked_ones_run(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: x\n    slow: x\n")
    src = os.environ.get("PYTHONPATH", "")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (src, str(TESTS)) if p),
                        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the installed plugins take seconds to import
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "marks_guard", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout
    assert run.returncode == 1, out
    assert "test_unmarked_server starts the CLI server" in out and "not marked @pytest.mark.e2e" in out
    assert "test_unmarked_model loads a real model but is not marked @pytest.mark.slow" in out
    assert "2 failed, 2 passed" in out, out
