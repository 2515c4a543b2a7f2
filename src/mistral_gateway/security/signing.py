"""HMAC-signed, expiring download URLs for files (no token needed to follow them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

__all__ = ["UrlSigner", "load_or_create_secret"]


class UrlSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("signing secret must be at least 16 bytes")
        self._secret = secret

    def sign(self, *parts: str) -> str:
        mac = hmac.new(self._secret, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def verify(self, signature: str, *parts: str) -> bool:
        return hmac.compare_digest(self.sign(*parts).encode("ascii"), signature.encode("ascii", "replace"))


def load_or_create_secret(path: Path) -> bytes:
    """A per-installation secret kept in the data dir (mode 0600). Replicas must share one: set it in config."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")  # one per caller: never shared
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    try:
        os.link(tmp, path)  # fails if another process won the race; then use theirs
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        return bytes.fromhex(path.read_text().strip())
    tmp.unlink(missing_ok=True)
    return secret
