"""A llama.cpp model server in its own process: ``python -m mistral_gateway.engines.llama_worker``.

Reads one JSON line of parameters (``llama.build_params``) on stdin, starts the server on a loopback port guarded by
the given key, prints ``{"address": ...}``, then waits for stdin to close and exits (the parent exited or crashed).
"""

from __future__ import annotations

import json
import os
import sys

__all__ = ["main"]


def main() -> int:
    os.environ.setdefault("OMP_PROC_BIND", "true")  # before the OpenMP runtime loads
    config = json.loads(sys.stdin.readline())
    import xllamacpp

    from mistral_gateway.engines.llama import build_params

    server = xllamacpp.Server(build_params(config))
    print(json.dumps({"address": server.listening_address}), flush=True)
    sys.stdin.read()  # blocks until the parent closes our stdin
    os._exit(0)  # skip interpreter teardown of llama.cpp's threads


if __name__ == "__main__":
    raise SystemExit(main())
