"""``mistral-gateway worker``: run job workers without the HTTP server, sharing the queue (the database) with every
other worker and server; stops on SIGTERM/SIGINT, handing running jobs back to the queue."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

from mistral_gateway.cli.common import add_location_args, bounded_int, settings_from

__all__ = ["register"]


def register(sub: Any) -> None:
    worker = sub.add_parser("worker", help="run background job workers only (no HTTP server)")
    worker.add_argument("--workers", type=bounded_int(1, 64), help="jobs run at once (default: job_workers)")
    add_location_args(worker)
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from mistral_gateway.app import Application
    from mistral_gateway.app.batch import route_batches
    from mistral_gateway.logs import configure_logging
    from mistral_gateway.services.container import build_services

    os.umask(0o077)  # as `serve`: whatever jobs write is owner-only
    settings = settings_from(args, job_workers=args.workers)
    configure_logging(settings.log_level, settings.log_format)
    services = build_services(settings)
    route_batches(Application(services))  # batch lines billed and routed like requests
    try:
        asyncio.run(_run(services))
    finally:
        services.close()
    return 0


async def _run(services: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The services' one lifecycle, job workers included: usage and limits run as for requests (jobs are metered
    # like them); at the end running jobs go back to the queue.
    async with services.running(jobs=True):
        runner = services.job_runner
        print(f"mistral-gateway worker {runner.worker_id}: {runner.options.workers} worker(s), job kinds: "
              f"{', '.join(runner.handlers.kinds()) or '(none)'}", flush=True)
        await stop.wait()
