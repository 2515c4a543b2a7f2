"""A throwaway PostgreSQL 16 cluster with pgvector for the library index tests, run from the binaries that the
``pgserver`` wheel bundles (Debian bookworm has no pgvector package): ``initdb`` into a temp dir, trust auth on
127.0.0.1 only, a free loopback port, durability off. As root, the server runs as ``postgres`` (PostgreSQL refuses
root), as in ``scripts/pg_test_cluster.sh``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PGSERVER_MISSING", "pgserver_bindir", "pgvector_cluster"]

PGSERVER_MISSING = "pgvector tests skipped: the pgserver wheel (PostgreSQL 16 + pgvector) is not installed"


def pgserver_bindir() -> Path | None:
    """pgserver's PostgreSQL binaries, found without importing it (its import sets up things of its own)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner_command(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def pgvector_cluster(bindir: Path) -> Iterator[str]:
    """Starts the cluster; yields a SQLAlchemy URL of its ``postgres`` database; stops and removes it after."""
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # reachable by `postgres`, unlike a private TMPDIR
    folder = Path(tempfile.mkdtemp(prefix="mg-pgvector.", dir=parent))
    data, sock = folder / "data", folder / "sock"
    data.mkdir()
    sock.mkdir()
    if os.geteuid() == 0:
        # `postgres` may not reach the venv (a checkout under a 0700 /tmp, as on CI machines): a copy of the
        # install next to the cluster (34 MB; relocatable: lib/ and share/ beside bin/, the wheel's bundled libpq in
        # pgserver.libs three levels up, where the binaries' RPATH looks)
        package = bindir.parents[1]
        shutil.copytree(package / "pginstall", folder / "pgserver" / "pginstall", symlinks=True)
        shutil.copytree(package.parent / "pgserver.libs", folder / "pgserver.libs", symlinks=True)
        bindir = folder / "pgserver" / "pginstall" / "bin"
        shutil.chown(folder, "postgres")
        for path in (data, sock):
            shutil.chown(path, "postgres")
    else:
        folder.chmod(0o700)
    try:
        subprocess.run(_owner_command([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                       "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, capture_output=True, timeout=120, cwd=folder)
        options = (f"-p {_free_port()} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        subprocess.run(_owner_command([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                                       "-w", "-t", "60", "-o", options, "start"]),
                       check=True, capture_output=True, timeout=120, cwd=folder)
        port = options.split()[1]
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_owner_command([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=120, check=False, cwd=folder)
        shutil.rmtree(folder, ignore_errors=True)
