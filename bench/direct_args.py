"""What the in-process baselines (``embed_direct.py``, ``moderation_direct.py``, ``ocr_direct.py``) share: their
common arguments and the server's own model loader, so a baseline runs the same weights and settings as ``serve``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def parser(doc: str | None, model: str, *, corpus: bool = True) -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if corpus:
        out.add_argument("--corpus", type=Path, required=True)
    out.add_argument("--data-dir", type=Path, required=True, help="the gateway's data dir (bundled weights)")
    out.add_argument("--model", default=model)
    out.add_argument("--rounds", type=int, default=1)
    return out


def resolve(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the server's EngineManager, the catalog entry of ``--model``), as ``serve`` would load them."""
    from mistral_gateway.config import load_settings
    from mistral_gateway.engines.manager import EngineManager
    from mistral_gateway.services.models import ModelCatalog

    settings = load_settings(data_dir=args.data_dir)
    entry = ModelCatalog(settings.models).resolve(args.model)
    if entry is None:
        raise SystemExit(f"unknown model {args.model!r}")
    return EngineManager(settings), entry
