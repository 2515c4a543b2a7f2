"""One LoRA training run, inside the worker process (``training.lora_worker``): load the cached base, train with
peft, report through ``progress.jsonl``, checkpoint, and export the adapter as GGUF.

Everything is a function of the spec and the step number (seeded init, a seeded batch order per step, the RNG state
in each checkpoint), so a run resumed from its last checkpoint after a ``kill -9`` continues exactly as an
uninterrupted one would. A ``stop`` file in the run directory (or SIGTERM) ends it at the next step boundary.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

from mistral_gateway.engines.base import TrainingSpec
from mistral_gateway.training.base_cache import converted_base, load_base
from mistral_gateway.training.lora_data import IGNORE, Example, Fim, batch_indices, collate, load_examples
from mistral_gateway.training.lora_export import adapter_tensors, read_layout, write_adapter
from mistral_gateway.training.progress import ProgressWriter
from mistral_gateway.training.worker_main import STOP_NAME, Stopped

__all__ = ["ADAPTER_NAME", "STOP_NAME", "Stopped", "run", "total_steps"]

ADAPTER_NAME = "adapter.gguf"
_KEEP_CHECKPOINTS = 2
_MAX_VALID = 64  # validation lines scored at each checkpoint (bounded: scoring is a forward pass each)
_CHECKPOINT = re.compile(r"^step-(\d{6,})$")


def total_steps(spec: TrainingSpec, examples: int) -> int:
    if spec.training_steps is not None:
        return spec.training_steps
    return max(1, math.ceil(spec.epochs * examples / spec.batch_size))


def run(spec: TrainingSpec, progress: ProgressWriter, stop: Any) -> tuple[Path, int]:
    """Trains to the end and returns the adapter and the step count; raises Stopped when ``stop()`` turns true."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(spec.threads)
    torch.set_num_interop_threads(1)  # the default pool is one thread per core: bounded like the rest
    run_dir = Path(spec.run_dir)
    model, tokenizer = load_base(converted_base(Path(spec.base_gguf), Path(spec.cache_dir)))
    fim = Fim(spec.fim_template, spec.fim_ratio, spec.seed) if spec.fim_template and spec.fim_ratio > 0 else None
    train = load_examples(spec.training_files, tokenizer, spec.seq_len, fim)
    valid = load_examples(spec.validation_files, tokenizer, spec.seq_len)[:_MAX_VALID]
    if not train:
        raise ValueError("no training line has anything to learn within seq_len tokens")
    total = total_steps(spec, len(train))
    torch.manual_seed(spec.seed)  # LoRA's A init
    model = get_peft_model(model, LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                                             target_modules=list(spec.target_modules), task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, spec.warmup_fraction))
    start = _resume(run_dir / "checkpoints", model, optimizer, scheduler)
    progress.write("started", total_steps=total, step=start, examples=len(train), valid_examples=len(valid))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    losses: list[float] = []
    for step in range(start, total):
        if stop():
            raise Stopped(step)
        began = time.monotonic()
        batch = collate([train[i] for i in batch_indices(step, spec.batch_size, len(train), spec.seed)], pad)
        model.train()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        progress.write("step", step=step + 1, train_loss=_finite(losses[-1]), lr=scheduler.get_last_lr()[0],
                       tokens=int(batch["attention_mask"].sum()), seconds=round(time.monotonic() - began, 4))
        if (step + 1) % spec.checkpoint_every == 0 or step + 1 == total:
            metrics = evaluate(model, valid, spec.batch_size, pad) if valid else {}
            _save(run_dir / "checkpoints", step + 1, model, optimizer, scheduler)
            progress.write("checkpoint", step=step + 1, train_loss=_finite(sum(losses) / len(losses)), **metrics)
            losses = []
    adapter = run_dir / ADAPTER_NAME
    layout = read_layout(Path(spec.base_gguf))
    write_adapter(adapter, adapter_tensors(_lora_state(model), layout), layout, spec.alpha)
    return adapter, total


def evaluate(model: Any, examples: list[Example], batch_size: int, pad: int) -> dict[str, float | None]:
    """Mean loss per assistant token and the share of them the model predicts exactly (greedy)."""
    import torch

    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, len(examples), batch_size):
            batch = collate(examples[begin:begin + batch_size], pad)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE
            loss_sum += float(torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="sum"))
            correct += int((logits.argmax(-1)[mask] == labels[mask]).sum())
            count += int(mask.sum())
    if not count:
        return {}
    return {"valid_loss": _finite(loss_sum / count), "valid_mean_token_accuracy": correct / count}


def _schedule(total: int, warmup_fraction: float) -> Any:
    warmup = round(warmup_fraction * total)

    def factor(step: int) -> float:  # linear warm-up, then linear decay to a tenth at the last step
        if step < warmup:
            return (step + 1) / warmup
        return 1.0 - 0.9 * (step - warmup) / max(1, total - warmup)

    return factor


def _lora_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def _save(directory: Path, step: int, model: Any, optimizer: Any, scheduler: Any) -> None:
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:06d}"
    scratch = directory / f".step-{step:06d}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    save_file({k: v.contiguous() for k, v in _lora_state(model).items()}, scratch / "adapter_model.safetensors")
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state()}, scratch / "trainer.pt")
    shutil.rmtree(final, ignore_errors=True)
    scratch.rename(final)  # complete or absent: a kill -9 mid-save leaves only a scratch directory
    for old in _checkpoints(directory)[:-_KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def _resume(directory: Path, model: Any, optimizer: Any, scheduler: Any) -> int:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    found = _checkpoints(directory)
    if not found:
        return 0
    latest = found[-1]
    set_peft_model_state_dict(model, load_file(latest / "adapter_model.safetensors"))
    state = torch.load(latest / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return int(state["step"])


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))  # type: ignore[union-attr]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
