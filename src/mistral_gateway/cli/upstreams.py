"""``mistral-gateway upstreams``: list configured upstreams and keep their API keys encrypted in the database."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any

from mistral_gateway.cli.common import add_location_args, settings_from

__all__ = ["register"]


def register(sub: Any) -> None:
    ups = sub.add_parser("upstreams", help="list upstreams; store their API keys encrypted")
    usub = ups.add_subparsers(dest="upstreams_command", required=True)
    lst = usub.add_parser("list", help="each upstream, where its key comes from, and what routes to it")
    lst.add_argument("--json", action="store_true")
    add_location_args(lst)
    lst.set_defaults(func=_list)
    set_key = usub.add_parser("set-key", help="store an upstream's API key, encrypted (read from stdin or a prompt)")
    set_key.add_argument("name")
    add_location_args(set_key)
    set_key.set_defaults(func=_set_key)
    delete = usub.add_parser("delete-key", help="remove a stored API key")
    delete.add_argument("name")
    add_location_args(delete)
    delete.set_defaults(func=_delete_key)


def _store(args: argparse.Namespace) -> Any:
    from mistral_gateway.services.upstream_keys import UpstreamKeyStore
    from mistral_gateway.storage.db import Database
    from mistral_gateway.storage.secrets import UpstreamSecretRepository

    settings = settings_from(args)
    db = Database(settings.sqlalchemy_url)
    db.migrate()
    return settings, UpstreamKeyStore(UpstreamSecretRepository(db), settings)


def _list(args: argparse.Namespace) -> int:
    settings, store = _store(args)
    stored = store.stored()
    rows = []
    for up in settings.upstreams:
        if up.api_key_env and os.environ.get(up.api_key_env):
            key = f"env {up.api_key_env}"
        elif up.name in stored:
            key = "stored (encrypted), set " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(stored[up.name]))
        else:
            key = "none"
        rows.append({
            "name": up.name, "kind": up.kind, "base_url": up.base_url or "https://api.mistral.ai", "key": key,
            "models": [m.id for m in settings.models if any(r.upstream == up.name for r in m.routes)],
            "passthrough_workspaces": [w.name for w in settings.workspaces if w.passthrough == up.name],
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no upstreams configured (see README: Upstreams and routing)")
    for row in rows:
        print(f"{row['name']}  {row['kind']}  {row['base_url']}  key: {row['key']}")
        if row["models"]:
            print(f"    models: {', '.join(row['models'])}")
        if row["passthrough_workspaces"]:
            print(f"    passthrough for workspaces: {', '.join(row['passthrough_workspaces'])}")
    return 0


def _set_key(args: argparse.Namespace) -> int:
    _, store = _store(args)
    key = getpass.getpass(f"API key for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    try:
        store.set(args.name, key)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"stored the key of upstream {args.name!r} (encrypted); restart the server to use it")
    return 0


def _delete_key(args: argparse.Namespace) -> int:
    _, store = _store(args)
    if not store.delete(args.name):
        print(f"error: no stored key for upstream {args.name!r}", file=sys.stderr)
        return 1
    print(f"deleted the stored key of upstream {args.name!r}")
    return 0
