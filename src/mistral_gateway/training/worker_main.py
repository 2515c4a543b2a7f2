"""What every training worker process does around its training: bound the threads before torch loads, run at a
lower priority, turn a ``stop`` file or SIGTERM into ``Stopped``, and end ``progress.jsonl`` with exactly one
terminal line: succeeded (with the artifact), cancelled, or failed (with the reason). Light: no torch here.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mistral_gateway.training.progress import ProgressWriter

__all__ = ["PROGRESS_NAME", "SPEC_NAME", "STOP_NAME", "Stopped", "Train", "bound_threads", "run_worker",
           "write_json_atomic"]

SPEC_NAME = "spec.json"
PROGRESS_NAME = "progress.jsonl"
STOP_NAME = "stop"

# (progress, stop) -> (the artifact, the last step); raises Stopped(step) when stop() turns true
Train = Callable[[ProgressWriter, Callable[[], bool]], tuple[Path, int]]


class Stopped(Exception):
    """Raised by a training loop that saw the stop request; ``args[0]`` is the step it stopped at."""


def write_json_atomic(path: Path, data: Any) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(data), encoding="utf-8")
    os.replace(scratch, path)  # complete or absent


def bound_threads(threads: int) -> None:
    """Before torch or any BLAS loads: their pools are sized once, from these."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the hub


def run_worker(run_dir: Path, threads: int, train: Train) -> int:
    bound_threads(threads)
    os.nice(5)  # training yields the CPU to request handling when both want it
    requested: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: requested.append(True))
    stop_file = run_dir / STOP_NAME
    progress = ProgressWriter(run_dir / PROGRESS_NAME)
    try:
        artifact, steps = train(progress, lambda: bool(requested) or stop_file.exists())
        progress.write("succeeded", step=steps, adapter=str(artifact))
    except Stopped as stopped:
        progress.write("cancelled", step=stopped.args[0] if stopped.args else 0)
        return 0
    except Exception as exc:  # the job shows the reason; the traceback goes to the worker log
        progress.write("failed", message=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        progress.close()
    return 0
