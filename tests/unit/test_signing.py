"""security.signing: HMAC-signed URL parts, and the per-installation secret."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from mistral_gateway.security.signing import UrlSigner, load_or_create_secret

SECRET = b"s" * 32


def test_sign_and_verify() -> None:
    signer = UrlSigner(SECRET)
    sig = signer.sign("file-1", "ws-1", "1700000000")
    assert signer.verify(sig, "file-1", "ws-1", "1700000000")
    assert sig == signer.sign("file-1", "ws-1", "1700000000")  # deterministic
    assert "=" not in sig and "+" not in sig and "/" not in sig  # url-safe, unpadded
    assert len(sig) == 43  # 32 bytes of HMAC-SHA256


@pytest.mark.parametrize("parts", [
    ("file-2", "ws-1", "1700000000"),
    ("file-1", "ws-2", "1700000000"),
    ("file-1", "ws-1", "1700000001"),
    ("file-1", "ws-1"),
    ("file-1", "ws-1", "1700000000", ""),
    ("file-1ws-1", "1700000000"),
    ("file-1\x1fws-1", "1700000000x"),
])
def test_tampered_parts_fail(parts: tuple[str, ...]) -> None:
    signer = UrlSigner(SECRET)
    sig = signer.sign("file-1", "ws-1", "1700000000")
    assert not signer.verify(sig, *parts)


def test_tampered_signature_fails() -> None:
    signer = UrlSigner(SECRET)
    sig = signer.sign("a", "b")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for bad in (flipped, sig[:-1], sig + "A", "", sig.upper() if sig.upper() != sig else sig.lower(), "é" * 43):
        assert not signer.verify(bad, "a", "b"), bad


def test_other_secret_fails() -> None:
    sig = UrlSigner(SECRET).sign("a")
    assert not UrlSigner(b"t" * 32).verify(sig, "a")


def test_short_secret_rejected() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        UrlSigner(b"x" * 15)
    UrlSigner(b"x" * 16)


def test_load_or_create_secret_persists(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "signing.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes.fromhex(path.read_text()) == first
    assert load_or_create_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temporary file left
    other = load_or_create_secret(tmp_path / "other.key")
    assert other != first


def test_load_existing_secret(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_text(("ab" * 32) + "\n")
    assert load_or_create_secret(path) == bytes.fromhex("ab" * 32)


@pytest.mark.parametrize("round_", range(10))
def test_concurrent_creation_agrees(tmp_path: Path, round_: int) -> None:
    """First start of several workers (or the server and the CLI) at once: all end up with one secret."""
    path = tmp_path / "signing.key"
    results: list[bytes] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            results.append(load_or_create_secret(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 8
    assert len(set(results)) == 1
    assert results[0] == bytes.fromhex(path.read_text())
    assert os.listdir(tmp_path) == ["signing.key"]  # no temporary file left behind
