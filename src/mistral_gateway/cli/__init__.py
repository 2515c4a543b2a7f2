"""The ``mistral-gateway`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mistral_gateway.cli import admin, client_commands, models, server, upstreams, usage, worker

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mistral-gateway",
                                     description="Self-hosted Mistral AI API (native and LowCodeAPI dialects).")
    parser.add_argument("--data-dir", help="data directory (default ./.mistral-gateway or $MISTRAL_GATEWAY_DATA_DIR)")
    parser.add_argument("--config", help="TOML configuration file (or $MISTRAL_GATEWAY_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    server.register(sub)
    admin.register(sub)
    usage.register(sub)
    models.register(sub)
    client_commands.register(sub)
    upstreams.register(sub)
    worker.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Both engines (llama.cpp and torch) share one OpenMP runtime, configured by whichever loads first: pin its
    # threads before either can load, so decode speed does not depend on which model was asked for first.
    os.environ.setdefault("OMP_PROC_BIND", "true")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # a clean message instead of a traceback for expected failures
        from pydantic import ValidationError

        from mistral_gateway.errors import GatewayError

        if isinstance(exc, GatewayError):
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        if isinstance(exc, ValidationError) and exc.title == "Settings":  # a bad setting, refused at startup
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            print(f"configuration error: {problems}", file=sys.stderr)
            return 2
        raise
