"""LoRA training and serving figures for one base GGUF: seconds per optimizer step and tokens trained per second
(batch of ``--batch`` lines of exactly ``--seq-len`` tokens, rank ``--rank``, the real worker process), the GGUF
adapter's size, and llama.cpp decode tokens/s of base + adapter, and of the adapter merged into a copy of the
base, against the base alone. Prints one JSON object.

    python bench/lora_training.py --asset smollm2-135m-instruct-q8_0 [--steps 6] [--threads 1] [--cache-dir DIR]

The first step is left out of the per-step figures (allocator and kernel warm-up); decode is the median of
``--rounds`` greedy generations of ``--decode-tokens`` tokens (EOS masked), the models' rounds alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.assets import resolve_asset
from mistral_gateway.engines.base import ChatMessage, SamplingParams, TrainingSpec
from mistral_gateway.engines.llama import LlamaEngine
from mistral_gateway.engines.trainer import LocalTrainer
from mistral_gateway.training.lora_merge import merge_adapter

_TEXT = ("The river town kept its records in a stone archive above the mill, and every spring the clerks carried the "
         "ledgers down to the square to read the names of those born, married and buried in the year before. ")


def train(base: Path, args: argparse.Namespace, work: Path) -> dict[str, object]:
    lines = [{"text": f"{n}. " + _TEXT * 8} for n in range(64)]  # each well over seq_len tokens: batches are full
    (work / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    spec = TrainingSpec(base_gguf=str(base), training_files=(str(work / "train.jsonl"),), run_dir=str(work / "run"),
                        cache_dir=str(args.cache_dir), training_steps=args.steps, seq_len=args.seq_len,
                        batch_size=args.batch, rank=args.rank, alpha=2.0 * args.rank, threads=args.threads,
                        checkpoint_every=args.steps)
    trainer = LocalTrainer()
    began = time.monotonic()
    handle = trainer.start(spec)
    trainer.wait(handle)
    progress = trainer.progress(handle)
    if progress.state != "succeeded":
        raise SystemExit(f"training {progress.state}: {(work / 'run' / 'worker.log').read_text()[-2000:]}")
    records = [json.loads(line) for line in (work / "run" / "progress.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"][1:]
    seconds = sum(r["seconds"] for r in steps)
    adapter = Path(progress.adapter or "")
    return {"steps": len(steps) + 1, "threads": args.threads, "batch": args.batch, "seq_len": args.seq_len,
            "rank": args.rank, "s_per_step": round(seconds / len(steps), 3),
            "tokens_per_s": round(sum(r["tokens"] for r in steps) / seconds, 1),
            "run_wall_s": round(time.monotonic() - began, 1), "adapter_bytes": adapter.stat().st_size,
            "adapter": str(adapter)}


def decode(models: list[tuple[Path, Path | None]], args: argparse.Namespace) -> list[float]:
    """Median decode tokens/s of each (GGUF, adapter) pair, all loaded, rounds alternating (on a shared machine load
    drifts; alternating exposes every model to the same drift)."""

    async def run() -> list[float]:
        engines = [LlamaEngine(ModelEntry(id=f"bench-lora-{n}", path=str(path), max_context_length=1024, parallel=1),
                               path, threads=args.threads, queue_limit=1, lora=lora)
                   for n, (path, lora) in enumerate(models)]
        try:
            prompt = await engines[0].render([ChatMessage(role="user", content="Tell me a long story about a river.")])
            params = SamplingParams(max_tokens=args.decode_tokens, min_tokens=args.decode_tokens, temperature=0)
            rates: list[list[float]] = [[] for _ in engines]
            for engine in engines:
                await engine.complete(prompt, SamplingParams(max_tokens=4, temperature=0))  # load and warm up
            for _ in range(args.rounds):
                for engine, out in zip(engines, rates, strict=True):
                    began = time.perf_counter()
                    generation = await engine.complete(prompt, params)
                    out.append(generation.completion_tokens / (time.perf_counter() - began))
            return [statistics.median(r) for r in rates]
        finally:
            for engine in engines:
                engine.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asset", default="smollm2-135m-instruct-q8_0")
    parser.add_argument("--weights-dir", type=Path, default=Path(".mistral-gateway/weights"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".mistral-gateway/training/bases"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=128)
    args = parser.parse_args()
    base = resolve_asset(args.asset, args.weights_dir)
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as scratch:
        report = {"asset": args.asset, **train(base, args, Path(scratch))}
        adapter = Path(str(report.pop("adapter")))
        merged = Path(scratch) / "merged.gguf"
        began = time.monotonic()
        merge_adapter(base, adapter, merged)
        report |= {"merge_s": round(time.monotonic() - began, 1), "merged_bytes": merged.stat().st_size}
        base_rate, lora_rate, merged_rate = decode([(base, None), (base, adapter), (merged, None)], args)
    report |= {"decode_base_tok_s": round(base_rate, 1), "decode_lora_tok_s": round(lora_rate, 1),
               "decode_merged_tok_s": round(merged_rate, 1), "decode_ratio": round(lora_rate / base_rate, 3),
               "decode_merged_ratio": round(merged_rate / base_rate, 3)}
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
