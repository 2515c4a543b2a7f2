"""API tokens: ``at_`` + 43 url-safe random characters (256 bits); only their sha256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "generate_token", "hash_token", "hashes_match", "looks_like_token"]

TOKEN_PREFIX = "at_"  # noqa: S105 - a prefix, not a secret


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # A fast hash is right here: tokens carry 256 bits of entropy, so there is nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hashes_match(stored: str, computed: str) -> bool:
    return hmac.compare_digest(stored.encode("ascii"), computed.encode("ascii"))


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 16 <= len(value) <= 256
