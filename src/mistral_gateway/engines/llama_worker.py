"""A llama.cpp model server in its own process: ``python -m mistral_gateway.engines.llama_worker``.

Reads one JSON line of parameters (``llama.build_params``) on stdin, starts the server on a loopback port guarded by
the given key, prints ``{"address": ...}``, then waits for stdin to close and exits (the parent exited or crashed).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["build_params", "main"]

# Deliberately light: a worker imports only this module and xllamacpp (no pydantic, httpx or the gateway), which
# keeps each model process ~50 MB smaller.


def build_params(config: dict[str, Any]) -> Any:
    """xllamacpp server parameters, shared by the in-process server and the worker process."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = config["path"]
    params.n_parallel = config["parallel"]
    params.n_ctx = config["ctx"]  # llama.cpp splits it evenly between slots
    params.cpuparams.n_threads = config["threads"]
    params.cpuparams_batch.n_threads = config["threads"]
    params.cont_batching = True
    # cpp-httplib serves each connection on one thread of a fixed pool, and keeps it there while the connection idles
    # (keep-alive, up to 5 s). llama.cpp's default pool (n_parallel + 4 threads) is smaller than the connections the
    # gateway holds under load (a stream per admitted request plus the blocking tokenizer calls): requests then waited
    # for an idle connection to time out, in 5 s waves (measured: 40 requests to SmolLM2 answered at 0, 5, 10, 15 s).
    params.n_threads_http = config.get("http_threads", -1)
    # Physical batch: llama.cpp sizes its compute buffer by it; 256 instead of 512 saves ~30 MB on the 1.5B model
    # and was not slower at prompt processing in a check here (CPU matmuls saturate well below 256 rows).
    params.n_ubatch = config.get("ubatch", 512)
    params.n_batch = max(params.n_ubatch, 512)
    # Memory: without mmap the file pages do not stay resident next to llama.cpp's repacked copy (~0.6 GB on the
    # 1.5B model, but ~10% slower decode on small ones, hence per model); flash attention and an 8-bit KV cache:
    # the default catalog then fits in ~2.4 GB instead of 3.5.
    if not config["mmap"]:
        params.load_mode = xllamacpp.llama_load_mode.LLAMA_LOAD_MODE_NONE
    params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    kv = xllamacpp.ggml_type.GGML_TYPE_F16 if config.get("kv") == "f16" else xllamacpp.ggml_type.GGML_TYPE_Q8_0
    params.cache_type_k = kv
    params.cache_type_v = kv
    params.use_jinja = True
    params.warmup = False
    params.verbosity = 0
    params.port = 0  # its HTTP listener binds 127.0.0.1 on a free port; only we hold its key
    params.api_keys = [config["key"]]
    if config.get("lora"):  # a fine-tuned model: the base GGUF plus its LoRA adapter
        adapter = xllamacpp.CommonAdapterLoraInfo()
        adapter.path = config["lora"]
        adapter.scale = 1.0
        params.lora_adapters = [adapter]
    if config.get("mmproj"):  # a multimodal projector (engines.multimodal); llama.cpp reads the marker at load
        params.mmproj.path = config["mmproj"]
        os.environ["LLAMA_MEDIA_MARKER"] = config["marker"]
        # bytes llama.cpp cannot decode as an image it pipes into ffprobe (video) from PATH: no ffmpeg can be
        # found under /dev/null, so request bytes never reach one
        params.video_ffmpeg_bin_dir = os.devnull
    return params


def main() -> int:
    os.environ.setdefault("OMP_PROC_BIND", "true")  # before the OpenMP runtime loads
    config = json.loads(sys.stdin.readline())
    import xllamacpp

    # Importing xllamacpp with OMP_PROC_BIND pins this thread, and the server threads it starts, to one CPU. Left
    # so on purpose: restoring both CPUs for the HTTP threads measured slower in the chat benchmark (1.5B single
    # stream 0.93x of the engine against 0.98x, one run each; see the session notes).
    try:
        server = xllamacpp.Server(build_params(config))
    except Exception as exc:  # llama.cpp logs nothing at verbosity 0: say what failed, for the parent's error
        print(f"llama_worker: cannot load {config['path']}{_diagnose(config['path'])}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        return 1
    print(json.dumps({"address": server.listening_address}), flush=True)
    sys.stdin.read()  # blocks until the parent closes our stdin
    os._exit(0)  # skip interpreter teardown of llama.cpp's threads


def _diagnose(path: str) -> str:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        return f" ({exc.strerror})"
    return "" if magic == b"GGUF" else " (not a GGUF file)"


if __name__ == "__main__":
    raise SystemExit(main())
