"""The classifier trainer's inputs: the lines of the training files (``classifier_data.parse_line``, so what the
jobs API validated is what is trained) and their embeddings, cached in the run directory.

Encoding is the expensive part of a classifier run (the fit takes seconds), so embeddings are written in parts of
``PART`` texts as they are computed, under a key of the encoder and the texts: a run started again after a crash or
a cancel reads the parts it has and encodes only the rest. The stop request is checked between encoder batches.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mistral_gateway.engines.base import ClassifierTargetSpec, EmbeddingEngine
from mistral_gateway.training.classifier_data import ClassifierExample, parse_line
from mistral_gateway.training.worker_main import Stopped

__all__ = ["BATCH", "PART", "ReadLines", "encode_cached", "read_lines"]

BATCH = 32  # texts per encoder call: a stop request waits for at most one
PART = 256  # texts per cache file


class ReadLines:
    def __init__(self) -> None:
        self.examples: list[ClassifierExample] = []
        self.skipped: list[str] = []  # "file:line: reason", for lines the jobs API let through (skip percentage)


def read_lines(files: Sequence[str], targets: Sequence[ClassifierTargetSpec]) -> ReadLines:
    out = ReadLines()
    for name in files:
        with open(name, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    out.examples.append(parse_line(raw, targets))
                except ValueError as exc:
                    out.skipped.append(f"{Path(name).name}:{number}: {exc}")
    return out


async def encode_cached(encoder: EmbeddingEngine, encoder_id: str, texts: Sequence[str], cache: Path,
                        stop: Callable[[], bool]) -> np.ndarray:
    """(len(texts), dimensions) float32 embeddings, read from ``cache`` where a part is there already."""
    digest = hashlib.sha256(f"{encoder_id}\0{encoder.dimensions}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    directory = cache / digest.hexdigest()[:24]
    directory.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), PART):
        chunk = texts[start:start + PART]
        path = directory / f"part-{start // PART:05d}.npy"
        part = _read_part(path, len(chunk), encoder.dimensions)
        if part is None:
            part = await _encode(encoder, chunk, stop)
            scratch = path.with_name(path.name + ".tmp")
            with scratch.open("wb") as fh:
                np.save(fh, part)
            os.replace(scratch, path)  # complete or absent
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dimensions), dtype=np.float32)


async def _encode(encoder: EmbeddingEngine, texts: Sequence[str], stop: Callable[[], bool]) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), BATCH):
        if stop():
            raise Stopped(0)
        rows += (await encoder.embed(list(texts[start:start + BATCH]))).vectors
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), encoder.dimensions)


def _read_part(path: Path, rows: int, dims: int) -> np.ndarray | None:
    try:
        part = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return part if part.shape == (rows, dims) and part.dtype == np.float32 else None
