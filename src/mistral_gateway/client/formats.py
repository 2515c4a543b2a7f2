"""The LowCodeAPI URL formats, and the memory of which one a server answered to.

New format: path parameters in the path (``/mistralai/v1/files/{file_id}``). Old format: the parameter's *name*
is the path segment and its value a query parameter (``/mistralai/v1/files/file_id?file_id=...``). The seed says:
try the new format first, fall back to the old one, and remember what worked for that provider. We remember it
per (base URL, provider) in a small JSON file so the next process goes straight to the right format:

    {"version": 1, "entries": {"http://127.0.0.1:8080": {"mistralai": {"format": "old", "updated_at": 1.7e9}}}}

Writes hold an ``flock`` on a sibling ``.lock`` file and replace the file atomically (temp file + rename), so
concurrent processes never lose each other's entries and readers never see half a file. A missing, unreadable or
corrupt file just means "nothing remembered yet".
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from mistral_gateway.fileops import atomic_write_text, exclusive_lock
from mistral_gateway.registry.operation import PATH_PARAM

__all__ = ["CACHE_ENV", "Format", "FormatMemory", "default_cache_path", "format_path"]

Format = Literal["new", "old"]
CACHE_ENV = "MISTRAL_GATEWAY_CLIENT_CACHE"

log = logging.getLogger("mistral_gateway.client")


def format_path(path: str, values: dict[str, str], fmt: Format) -> tuple[str, dict[str, str]]:
    """A templated native path (``/v1/files/{file_id}``) as a LowCodeAPI path and the extra query parameters."""
    if fmt == "new":
        return "/mistralai" + PATH_PARAM.sub(lambda m: quote(str(values[m.group(1)]), safe=""), path), {}
    return "/mistralai" + PATH_PARAM.sub(lambda m: m.group(1), path), {k: str(v) for k, v in values.items()}


def default_cache_path() -> Path:
    """``$MISTRAL_GATEWAY_CLIENT_CACHE``, else ``$XDG_CACHE_HOME/mistral-gateway/formats.json`` (``~/.cache``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mistral-gateway" / "formats.json"


class FormatMemory:
    """Which URL format works, per base URL and provider, persisted across processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def get(self, base_url: str, provider: str = "mistralai") -> Format | None:
        entry = self._read().get(base_url, {}).get(provider)
        fmt = entry.get("format") if isinstance(entry, dict) else None
        return fmt if fmt in ("new", "old") else None

    def set(self, base_url: str, provider: str, fmt: Format) -> bool:
        """Record ``fmt``; False (logged, never raised) when the cache cannot be written, e.g. a read-only home."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Read-modify-write under the lock: another process's entry written meanwhile is kept.
            with exclusive_lock(self.lock_path):
                entries = self._read()
                entries.setdefault(base_url, {})[provider] = {"format": fmt, "updated_at": time.time()}
                atomic_write_text(self.path, json.dumps({"version": 1, "entries": entries}, indent=2) + "\n")
        except OSError as exc:
            log.debug("could not write the client format cache %s: %s", self.path, exc)
            return False
        return True

    def all(self) -> dict[str, dict[str, Format]]:
        """Every remembered format: {base URL: {provider: format}}."""
        out: dict[str, dict[str, Format]] = {}
        for base, providers in self._read().items():
            for provider, entry in providers.items():
                if isinstance(entry, dict) and entry.get("format") in ("new", "old"):
                    out.setdefault(base, {})[provider] = entry["format"]
        return out

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        entries = raw.get("entries") if isinstance(raw, dict) else None
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}
