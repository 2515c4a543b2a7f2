"""Token administration, the registry listing and the OpenAPI printer."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from mistral_gateway.cli.common import add_location_args, bounded_int, settings_from
from mistral_gateway.protocol.admin import MAX_EXPIRES_IN, MAX_LIMIT_VALUE

__all__ = ["register"]


def register(sub: Any) -> None:
    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser("create", help="create a token; it is printed once, alone on the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--workspace", default="default")
    create.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE",
                        help="repeatable; a category scope (files, models, chat, ...) or * (default: *)")
    create.add_argument("--expires-in", type=bounded_int(1, MAX_EXPIRES_IN), metavar="SECONDS")
    positive = bounded_int(1, MAX_LIMIT_VALUE)
    create.add_argument("--rpm", type=positive, metavar="N", help="requests per minute (default: default_token_limits)")
    create.add_argument("--tpm", type=positive, metavar="N", help="prompt + completion tokens per minute")
    create.add_argument("--concurrency", type=positive, metavar="N", help="requests in flight at once")
    add_location_args(create)
    create.set_defaults(func=_tokens_create)
    lst = tsub.add_parser("list", help="list tokens (never their secret)")
    lst.add_argument("--json", action="store_true")
    add_location_args(lst)
    lst.set_defaults(func=_tokens_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id (effective immediately)")
    revoke.add_argument("token_id")
    add_location_args(revoke)
    revoke.set_defaults(func=_tokens_revoke)

    openapi = sub.add_parser("openapi", help="print the generated OpenAPI 3.1 document")
    openapi.add_argument("--dialect", choices=["native", "lowcode"], default="native")
    openapi.set_defaults(func=_openapi)

    ops = sub.add_parser("operations", help="print the operation registry with each operation's status")
    ops.add_argument("--json", action="store_true")
    ops.set_defaults(func=_operations)


def _services(args: argparse.Namespace) -> Any:
    from mistral_gateway.services.container import build_services

    return build_services(settings_from(args))


def _tokens_create(args: argparse.Namespace) -> int:
    services = _services(args)
    token, record = services.tokens.create(args.name, workspace=args.workspace, scopes=args.scopes,
                                           expires_in=args.expires_in, requests_per_minute=args.rpm,
                                           tokens_per_minute=args.tpm, concurrent_requests=args.concurrency)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires_at)) if record.expires_at else "never"
    limits = [f"{name} {value}" for name, value in (("rpm", record.requests_per_minute),
                                                   ("tpm", record.tokens_per_minute),
                                                   ("concurrency", record.concurrent_requests)) if value]
    print(f"created token {record.id} ({record.name}) in workspace {record.workspace_name!r}, "
          f"scopes {' '.join(record.scopes)}, expires {expires}"
          + (f", limits {', '.join(limits)}" if limits else ""))
    print("the token is shown only now; store it safely:")
    print(token)
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    from mistral_gateway.services.tokens import describe_token

    now = time.time()
    rows = [describe_token(r, now) for r in _services(args).tokens.list()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':<26} {'NAME':<16} {'WORKSPACE':<12} {'PREFIX':<12} {'STATE':<8} SCOPES")
    for row in rows:
        print(f"{row['id']:<26} {row['name'][:16]:<16} {row['workspace'][:12]:<12} {row['prefix']:<12} "
              f"{row['state']:<8} {' '.join(row['scopes'])}")
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    _services(args).tokens.revoke(args.token_id)
    print(f"revoked {args.token_id}")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from mistral_gateway.http.openapi import build_openapi
    from mistral_gateway.registry import Registry

    print(json.dumps(build_openapi(Registry.load(), args.dialect), indent=2, ensure_ascii=False))
    return 0


def _operations(args: argparse.Namespace) -> int:
    from mistral_gateway.registry import Registry

    registry = Registry.load()
    if args.json:
        print(json.dumps([{"id": op.id, "name": op.name, "category": op.category, "method": op.method,
                           "path": op.path, "implemented": op.implemented, "seed": op.seed} for op in registry],
                         indent=2))
        return 0
    for op in registry:
        status = "implemented" if op.implemented else "not yet"
        print(f"{op.name:<32} {op.category:<15} {op.method:<6} {op.path:<55} {status}")
    done = sum(op.implemented for op in registry.seed)
    extras = f", and {len(registry.extras)} beyond them" if registry.extras else ""
    print(f"{done}/{len(registry.seed)} operations implemented{extras}", file=sys.stderr)  # stdout: one line an op
    return 0
