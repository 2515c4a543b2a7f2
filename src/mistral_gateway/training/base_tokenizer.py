"""The tokenizer of a base model's cached conversion, for checking training lines before a job trains.

The conversion (``training.base_cache.converted_base``: transformers de-quantizes the GGUF, ~30 s for SmolLM2-135M)
runs in a child process with bounded threads, so the server process never holds the float32 weights; the trainer
finds the same cache later. Only the tokenizer is loaded here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from mistral_gateway.training.base_cache import file_sha256

__all__ = ["base_tokenizer"]

_CONVERT = ("import sys; from pathlib import Path; from mistral_gateway.training.base_cache import converted_base; "
            "converted_base(Path(sys.argv[1]), Path(sys.argv[2]))")
# transformers resolves its names lazily and not thread-safely: two jobs validating at once could see an ImportError
_LOADING = threading.Lock()


def base_tokenizer(gguf: Path, cache_dir: Path, threads: int = 1, timeout: float = 3600.0) -> Any:
    directory = cache_dir / file_sha256(gguf)
    if not (directory / "config.json").is_file():
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **{name: str(threads) for name in (
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
        done = subprocess.run([sys.executable, "-c", _CONVERT, str(gguf), str(cache_dir)], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0 or not (directory / "config.json").is_file():
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"preparing {gguf.name} for training failed: {tail[0][:500]}")
    with _LOADING:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(directory)
