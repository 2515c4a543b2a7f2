"""``mistral-gateway serve``: migrate, bootstrap a dev token on first start, serve with uvicorn (in this process, or
in ``--workers N`` processes: cli/serve_workers.py)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mistral_gateway.cli.common import add_location_args, bounded_int, settings_from

__all__ = ["register"]


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=bounded_int(0, 65535))
    serve.add_argument("--workers", type=bounded_int(1, 64), default=1,
                       help="API worker processes on the one port (default 1: this process serves)")
    serve.add_argument("--no-worker", action="store_true", help="run no job workers in the server process")
    add_location_args(serve)
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mistral_gateway.http.accesslog import AccessLog
    from mistral_gateway.http.app import create_app
    from mistral_gateway.http.connection import uvicorn_options
    from mistral_gateway.logs import configure_logging
    from mistral_gateway.services.container import build_services

    os.umask(0o077)  # whatever the server or its model workers create is owner-only (storage/permissions.py)
    settings = settings_from(args, host=args.host, port=args.port,
                             run_embedded_worker=False if args.no_worker else None)
    configure_logging(settings.log_level, settings.log_format)
    services = build_services(settings)  # migrates: once, here, before any worker process starts
    if settings.bootstrap_dev_token:
        _announce_dev_token(services, settings.host, settings.port)
    # json: uvicorn's own lines go through our handler; text keeps uvicorn's usual output
    log_config = {} if settings.log_format == "text" else {"log_config": None}
    if args.workers > 1:
        services.close()  # each worker process builds its own
        from mistral_gateway.cli.serve_workers import run_workers

        return run_workers(args, settings, log_config)
    app = AccessLog(create_app(services=services))
    # uvicorn's own access log would print ?api_token=... verbatim; ours redacts it.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
                **log_config, **uvicorn_options(settings))
    return 0


def _announce_dev_token(services: Any, host: str, port: int) -> None:
    """First start: create a dev token (scopes * and admin) and keep it in data_dir/dev-token (0600) so later starts can
    print it again. The database holds only its hash."""
    from mistral_gateway.errors import Unauthorized

    path = services.settings.data_dir / "dev-token"
    token = None
    if path.exists():
        candidate = path.read_text().strip()
        try:
            services.tokens.verify(candidate)
            token = candidate
        except Unauthorized:
            token = None
    if token is None and services.tokens.count() == 0:
        token, _ = services.tokens.create("dev", workspace="default", scopes=["*", "admin"])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    if token is None:
        print("mistral-gateway: tokens exist already; create one with `mistral-gateway tokens create --name NAME`",
              flush=True)
        return
    print(f"""
mistral-gateway is starting on {base}
dev token (workspace 'default', all scopes; kept in {path}):
  {token}

Mistral native dialect:
  curl -s {base}/v1/models -H "Authorization: Bearer {token}"
LowCodeAPI dialect:
  curl -s "{base}/mistralai/v1/models?api_token={token}"
""", flush=True)
