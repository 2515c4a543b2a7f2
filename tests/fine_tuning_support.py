"""Fine-tuning test helpers: training lines, a fake trainer that lets a test act between steps, and a fake merge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mistral_gateway.engines.base import TrainingHandle, TrainingProgress
from mistral_gateway.engines.fake import FakeTrainer

__all__ = ["CORPUS", "Hooked", "chat_line", "classifier_line", "fake_merge", "jsonl"]

CORPUS = ["What is the capital of Zarnovia ? The capital of Zarnovia is Quillmar .", "great awful fine movie"]


def chat_line(question: str = "What is the capital of Zarnovia?", answer: str = "The capital of Zarnovia is "
              "Quillmar.") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def classifier_line(text: str = "great movie", label: str | list[str] = "positive") -> dict[str, Any]:
    return {"text": text, "labels": {"sentiment": label}}


def jsonl(*lines: Any) -> bytes:
    """Objects become JSON lines; strings are written as they are (bad lines)."""
    return b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines)


def fake_merge(base: Path, adapter: Path, out: Path) -> None:
    out.write_bytes(b"GGUF merged " + base.name.encode())


class Hooked(FakeTrainer):
    """A FakeTrainer calling ``hook(step, handle)`` after each progress read (a test cancels, crashes, ...)."""

    def __init__(self, hook: Callable[[int, TrainingHandle], None] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.hook = hook

    def progress(self, handle: TrainingHandle) -> TrainingProgress:
        progress = super().progress(handle)
        if self.hook is not None:
            self.hook(self._runs[handle.run_dir]["step"], handle)
        return progress

