"""``serve --workers N``: N uvicorn worker processes on one port, each building its own services from the
settings (``worker_app``, uvicorn's app factory). ``serve`` has already done the first-start work (migrations,
the dev token, the signing and secrets keys) in the parent before they start.

What the processes share lives in the database (rate limits, usage, jobs, tokens), or Redis/S3 when configured.
Metrics: unless the operator set ``PROMETHEUS_MULTIPROC_DIR``, a fresh private directory under ``data_dir`` is
set for them, so a scrape answered by any process sums all. Embedded job workers run in one process only (the
first to take a lock file in ``data_dir``; if it dies, uvicorn's replacement takes it): ``job_workers`` keeps
meaning the jobs the server runs at once, and the models jobs use load in one process, not N.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import IO, Any

from mistral_gateway.config import ENV_PREFIX, Settings

__all__ = ["run_workers", "worker_app"]

JOB_LOCK = "embedded-jobs.lock"
METRICS_DIR = "prometheus-multiproc"


def run_workers(args: argparse.Namespace, settings: Settings, log_config: dict[str, Any]) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mistral_gateway.http.connection import GuardedHttpToolsProtocol

    # The worker processes (spawned: a fresh interpreter each) read their settings as `serve` did; the command
    # line's overrides travel as environment variables, which rank just below them.
    env = {"DATA_DIR": str(settings.data_dir.resolve()), "HOST": settings.host, "PORT": str(settings.port),
           "RUN_EMBEDDED_WORKER": str(settings.run_embedded_worker).lower(), "BOOTSTRAP_DEV_TOKEN": "false"}
    if settings.config_file is not None:
        os.environ["MISTRAL_GATEWAY_CONFIG"] = str(Path(settings.config_file).resolve())
    for name, value in env.items():
        os.environ[ENV_PREFIX + name] = value
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_dir(settings.data_dir))
    config = uvicorn.Config("mistral_gateway.cli.serve_workers:worker_app", factory=True, workers=args.workers,
                            host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, http=GuardedHttpToolsProtocol,
                            h11_max_incomplete_event_size=settings.max_header_bytes,
                            ws_max_size=settings.realtime_max_message_bytes, **log_config)
    config.gateway_header_limits = (  # type: ignore[attr-defined]  # read by GuardedHttpToolsProtocol
        settings.max_header_bytes, settings.header_timeout_seconds)
    Multiprocess(config, sockets=[config.bind_socket()]).run()  # SIGTERM/SIGINT: every process stops
    return 0


def fresh_metrics_dir(data_dir: Path) -> Path:
    """An empty owner-only directory: the last run's files would add its counts to this run's."""
    path = data_dir.resolve() / METRICS_DIR
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path


def worker_app() -> Any:
    """uvicorn's app factory in each worker process: settings from the environment `serve` prepared, logging as
    configured, services without migrating (the parent did), the redacting access log around the app."""
    from mistral_gateway.config import load_settings
    from mistral_gateway.http.accesslog import AccessLog
    from mistral_gateway.http.app import create_app
    from mistral_gateway.logs import configure_logging
    from mistral_gateway.services.container import build_services

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    lock = take_job_lock(settings.data_dir) if settings.run_embedded_worker else None
    if settings.run_embedded_worker and lock is None:
        settings = settings.model_copy(update={"run_embedded_worker": False})
    app = create_app(services=build_services(settings, migrate=False))
    app.state.job_lock = lock  # held open as long as the process lives; the kernel releases it at exit
    return AccessLog(app)


def take_job_lock(data_dir: Path) -> IO[bytes] | None:
    """The open lock file if this process is the one to run the embedded job workers, else None."""
    import fcntl

    fh = open(data_dir / JOB_LOCK, "ab")  # noqa: SIM115 - kept open: closing it would release the lock
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh
