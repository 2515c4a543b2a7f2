"""Importing the gateway changes nothing: no environment variables set, no objects built, no import cycles between
services and upstreams."""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import os, sys
before = dict(os.environ)
import mistral_gateway.engines.llama, mistral_gateway.engines.sentence, mistral_gateway.engines.assets
import mistral_gateway.http.app, mistral_gateway.app, mistral_gateway.cli
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
assert not changed, f"importing set environment variables: {changed}"
assets = sys.modules["mistral_gateway.engines.assets"]
assert not any(isinstance(v, assets.AssetStore) for v in vars(assets).values()), "an AssetStore built at import"
assert assets.default_store() is assets.default_store()
print("clean")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}  # no HF_*/OMP_* inherited from the caller
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_importing_sets_no_environment_and_builds_nothing() -> None:
    proc = _run(_CHECK)
    assert proc.returncode == 0 and proc.stdout.strip() == "clean", proc.stderr


def test_upstreams_import_without_services() -> None:
    proc = _run("import sys; import mistral_gateway.upstreams.router, mistral_gateway.upstreams.openai\n"
                "bad = sorted(m for m in sys.modules if m.startswith('mistral_gateway.services'))\n"
                "assert not bad, bad; print('clean')")
    assert proc.returncode == 0 and proc.stdout.strip() == "clean", proc.stderr
