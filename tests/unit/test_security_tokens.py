"""security.tokens: token generation, hashing and shape checks."""

from __future__ import annotations

import hashlib
import re

from mistral_gateway.security.tokens import TOKEN_PREFIX, generate_token, hash_token, hashes_match, looks_like_token


def test_generate_token_shape_and_entropy() -> None:
    tokens = {generate_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX) and TOKEN_PREFIX == "at_"
        assert re.fullmatch(r"at_[A-Za-z0-9_-]{43}", token), token  # 32 random bytes, url-safe base64
        assert looks_like_token(token)


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("at_abc") == hashlib.sha256(b"at_abc").hexdigest()
    assert len(hash_token(generate_token())) == 64
    assert hash_token("at_a") != hash_token("at_b")


def test_hashes_match() -> None:
    h = hash_token("at_x")
    assert hashes_match(h, hash_token("at_x"))
    assert not hashes_match(h, hash_token("at_y"))
    assert not hashes_match(h, h[:-1])


def test_looks_like_token_bounds() -> None:
    assert not looks_like_token("")
    assert not looks_like_token("at_")
    assert not looks_like_token("at_" + "a" * 12)  # 15 characters
    assert looks_like_token("at_" + "a" * 13)  # 16 characters
    assert looks_like_token("at_" + "a" * 253)  # 256 characters
    assert not looks_like_token("at_" + "a" * 254)
    assert not looks_like_token("sk-" + "a" * 40)
    assert not looks_like_token("AT_" + "a" * 40)
