"""Upstream API keys at rest: AES-256-GCM with the upstream's name as associated data, so a sealed key cannot be
moved to another upstream's row. The 32-byte key comes from config (replicas must share it) or the data dir."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SecretBox"]

_NONCE = 12


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes (64 hex characters)")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))

    def open(self, sealed: bytes, context: str) -> str:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise ValueError(f"cannot decrypt the stored secret for {context!r}: the secrets key differs from the "
                             "one it was sealed with, or the row was altered") from None
