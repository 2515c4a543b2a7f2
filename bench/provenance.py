"""Which code a benchmark run measured: the git commit, whether the tree had uncommitted changes, and a run id.

Every row of ``results.json`` carries its run's ``run_id`` and ``git_sha``; ``runs`` holds each run's machine,
configuration and git state, so rows merged from several runs (``--suite X`` refreshes X only) stay attributable.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from pathlib import Path
from typing import Any

__all__ = ["UNKNOWN", "git_state", "new_run_id", "run_header"]

UNKNOWN = "unknown"


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(repo: Path) -> dict[str, Any]:
    """``git_sha`` (HEAD, or ``"unknown"`` outside a git checkout) and ``git_dirty`` (uncommitted changes to
    tracked files, which the SHA alone does not describe; ``None`` when unknown)."""
    sha = _git(repo, "rev-parse", "HEAD")
    if not sha:
        return {"git_sha": UNKNOWN, "git_dirty": None}
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


def new_run_id(now: dt.datetime | None = None) -> str:
    """Sortable and unique: ``20261126T035306Z-1a2b3c4d``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def run_header(repo: Path, machine: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``runs``: its id, git state, machine and configuration."""
    return {"run_id": new_run_id(), **git_state(repo), "machine": machine, "config": config}
