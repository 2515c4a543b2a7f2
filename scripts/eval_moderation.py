"""Evaluate a moderation head on the held-out split of data/moderation, through the serving engine.

Usage: python scripts/eval_moderation.py [--model mistral-moderation-latest] [--head PATH] [--json OUT]

Loads the model as the server does (the catalog entry, or a head file given with --head over the same encoder),
classifies every held-out line and prints per-category precision, recall and F1 and the macro F1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from mistral_gateway.config import load_settings
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.training.moderation import evaluate, heldout_examples

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "moderation")
    parser.add_argument("--model", default="mistral-moderation-latest")
    parser.add_argument("--head", type=Path, help="a head file to evaluate instead of the catalog's")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    settings = load_settings()
    entry = next(e for e in settings.models if args.model in (e.id, *e.aliases))
    if args.head:
        entry = entry.model_copy(update={"path": str(args.head), "head": None})
    manager = EngineManager(settings)

    async def run() -> dict[str, object]:
        return await evaluate(await manager.classifier(entry), heldout_examples(args.data))

    try:
        figures = asyncio.run(run())
    finally:
        manager.close()
    print(f"{'category':32} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>7}")
    for name, row in figures.items():
        if isinstance(row, dict):
            print(f"{name:32} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1']:6.3f} {row['support']:7}")
    print(f"{'macro F1':32} {figures['macro_f1']:>30.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
