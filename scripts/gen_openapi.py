"""Write (or with --check, verify) the generated documents: openapi/*.json and README's capability table.

All are generated from the registry; CI fails when the committed copies drift from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mistral_gateway.http.openapi import build_definition, build_openapi
from mistral_gateway.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "openapi"
README = ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- capabilities:start -->", "<!-- capabilities:end -->"


def documents() -> dict[str, str]:
    registry = Registry.load()
    docs = {
        "native.json": build_openapi(registry, "native"),
        "lowcode.json": build_openapi(registry, "lowcode"),
        "definition.json": build_definition(registry),
    }
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in docs.items()}


def capability_table(registry: Registry) -> str:
    lines = ["| Operation | Category | Native method and path | Status |", "|---|---|---|---|"]
    for op in registry.seed:
        status = "✅ implemented" if op.implemented else "⏳ not yet (501)"
        lines.append(f"| {op.name} | {op.category} | `{op.method} {op.path}` | {status} |")
    done = sum(op.implemented for op in registry.seed)
    lines.append("")
    lines.append(f"{done} of {len(registry.seed)} operations implemented.")
    if registry.extras:
        lines += ["", "Beyond the seed's operations, further operations of Mistral's spec are served the same way "
                  "(both dialects, the documents, the client):", ""]
        lines += [f"- {op.name} (`{op.method} {op.path}`, `{op.operation_id}`)"
                  + ("" if op.implemented else ": not yet (501)") for op in registry.extras]
    return "\n".join(lines)


def readme_text() -> str:
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[:start] + "\n" + capability_table(Registry.load()) + "\n" + text[end:]


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
    readme = readme_text()
    if args.check:
        if README.read_text() != readme:
            stale.append("README.md capability table")
    else:
        README.write_text(readme)
        print("updated README.md capability table")
    if stale:
        print(f"openapi/ is out of date ({', '.join(stale)}): run `make openapi` and commit",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
