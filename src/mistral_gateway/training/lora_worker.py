"""The training worker process: ``python -m mistral_gateway.training.lora_worker RUN_DIR``.

Reads ``RUN_DIR/spec.json`` (a ``TrainingSpec``), trains (``training.lora_run``) and always ends its progress file
with one terminal line: succeeded (with the adapter), cancelled, or failed (with the reason). The thread count is
bounded before torch loads, and the process runs at a lower priority, so the server beside it stays responsive.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from mistral_gateway.engines.base import TrainingSpec

__all__ = ["PROGRESS_NAME", "SPEC_NAME", "main", "read_spec", "write_spec"]

SPEC_NAME = "spec.json"
PROGRESS_NAME = "progress.jsonl"


def write_spec(spec: TrainingSpec) -> None:
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    scratch = run_dir / (SPEC_NAME + ".tmp")
    scratch.write_text(json.dumps(asdict(spec)), encoding="utf-8")
    os.replace(scratch, run_dir / SPEC_NAME)


def read_spec(run_dir: Path) -> TrainingSpec:
    raw: dict[str, Any] = json.loads((run_dir / SPEC_NAME).read_text(encoding="utf-8"))
    known = {f.name for f in fields(TrainingSpec)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return TrainingSpec(**values)


def main(argv: list[str] | None = None) -> int:
    run_dir = Path((argv or sys.argv)[1])
    spec = read_spec(run_dir)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(spec.threads)  # before torch loads: its pools are sized once
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the hub
    os.nice(5)  # training yields the CPU to request handling when both want it
    requested = []
    signal.signal(signal.SIGTERM, lambda *_: requested.append(True))
    stop_file = run_dir / "stop"

    from mistral_gateway.training.lora_run import Stopped, run
    from mistral_gateway.training.progress import ProgressWriter

    progress = ProgressWriter(run_dir / PROGRESS_NAME)
    try:
        adapter, steps = run(spec, progress, stop=lambda: bool(requested) or stop_file.exists())
        progress.write("succeeded", step=steps, adapter=str(adapter))
    except Stopped as stopped:
        progress.write("cancelled", step=stopped.args[0])
        return 0
    except Exception as exc:  # the job shows the reason; the traceback goes to the worker log
        progress.write("failed", message=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
