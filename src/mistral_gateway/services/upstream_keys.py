"""Upstream API keys kept encrypted in the database (the alternative to an environment variable per upstream).

The AES key is ``secrets_key`` from config (hex; replicas must share it) or ``<data_dir>/secrets.key``, created
on first use. Keys are only ever decrypted to build the upstream clients; no route or command prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mistral_gateway.config import Settings
from mistral_gateway.errors import NotFound
from mistral_gateway.security.secretbox import SecretBox
from mistral_gateway.security.signing import load_or_create_secret
from mistral_gateway.storage.secrets import UpstreamSecretRepository

__all__ = ["UpstreamKeyStore"]


class UpstreamKeyStore:
    def __init__(self, repo: UpstreamSecretRepository, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self._repo = repo
        self._settings = settings
        self._clock = clock
        self._box: SecretBox | None = None

    def _sealer(self) -> SecretBox:
        if self._box is None:
            key = (bytes.fromhex(self._settings.secrets_key) if self._settings.secrets_key
                   else load_or_create_secret(self._settings.data_dir / "secrets.key"))
            self._box = SecretBox(key)
        return self._box

    def set(self, name: str, api_key: str) -> None:
        if name not in {u.name for u in self._settings.upstreams}:
            raise NotFound(f"no upstream named {name!r} in the configuration", code="UPSTREAM_NOT_FOUND")
        if not api_key.strip():
            raise ValueError("the API key is empty")
        self._repo.put(name, self._sealer().seal(api_key.strip(), name), int(self._clock()))

    def delete(self, name: str) -> bool:
        return self._repo.delete(name)

    def stored(self) -> dict[str, int]:
        """Upstream name → when its key was last set (the key itself stays sealed)."""
        return self._repo.updated()

    def load(self) -> dict[str, str]:
        sealed = self._repo.all()
        return {name: self._sealer().open(blob, name) for name, blob in sealed.items()} if sealed else {}
