"""Write (or with --check, verify) the committed OpenAPI and definition documents under openapi/.

The documents are generated from the registry; CI fails when the committed copies drift from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mistral_gateway.http.openapi import build_definition, build_openapi
from mistral_gateway.registry import Registry

OUT = Path(__file__).resolve().parents[1] / "openapi"


def documents() -> dict[str, str]:
    registry = Registry.load()
    docs = {
        "native.json": build_openapi(registry, "native"),
        "lowcode.json": build_openapi(registry, "lowcode"),
        "definition.json": build_definition(registry),
    }
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in docs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed documents are out of date")
    args = parser.parse_args()
    stale = []
    for name, text in documents().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote openapi/{name}")
    if stale:
        print(f"openapi/ is out of date ({', '.join(stale)}): run `make openapi` and commit the result",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
