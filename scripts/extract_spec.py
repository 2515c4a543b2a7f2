"""Extract the 55 seed operations and the registry's extras (and every schema they reach) from Mistral's published
OpenAPI document.

Writes src/mistral_gateway/registry/mistral_spec.json, a committed data file: the registry reads parameters and
schemas from it, so the served OpenAPI/definition documents and validation stay faithful to Mistral's contract.

    python scripts/extract_spec.py ../shared/spec/mistral-openapi.yaml
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mistral_gateway.registry.table import OPERATIONS  # noqa: E402

OUT = ROOT / "src" / "mistral_gateway" / "registry" / "mistral_spec.json"


def _fix_known_artifacts(schemas: dict[str, Any]) -> None:
    """Errors in the published spec that the API itself and the SDK contradict (see the contract digest)."""
    # ChatCompletionResponse lists "data" as required; responses have no such key (digest §4).
    for part in schemas["ChatCompletionResponse"].get("allOf", []):
        if "required" in part:
            part["required"] = [k for k in part["required"] if k != "data"]


def _with_stream_twin(op: dict[str, Any], row: Any, by_id: dict[str, tuple[str, str, dict[str, Any]]]
                      ) -> dict[str, Any]:
    """A seed whose streamed form is a ``#stream`` twin in the spec (the conversation operations: one route, the
    body's ``stream`` decides) gets the twin's event-stream answer beside its JSON one, as chat's has in the spec."""
    twin = by_id.get(row.operation_id + "_stream")
    if row.stream != "optional" or twin is None or twin[1] != row.path + "#stream":
        return op
    op = copy.deepcopy(op)
    events = twin[2]["responses"]["200"]["content"]["text/event-stream"]
    op["responses"]["200"].setdefault("content", {})["text/event-stream"] = copy.deepcopy(events)
    return op


def main(spec_path: str) -> None:
    spec = yaml.safe_load(Path(spec_path).read_text())
    schemas = spec["components"]["schemas"]
    by_id: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "operationId" in op:
                by_id[op["operationId"]] = (method, path, op)
    operations: dict[str, Any] = {}
    for row in OPERATIONS:
        method, path, op = by_id[row.operation_id]
        if method.upper() != row.method or path.split("#")[0] != row.path:
            raise SystemExit(f"{row.id}: registry says {row.method} {row.path}, spec says {method} {path}")
        op = _with_stream_twin(op, row, by_id)
        operations[row.operation_id] = {"method": method, "path": path, "operation": op}
    reached: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in reached:
                    reached[name] = schemas[name]
                    walk(schemas[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(operations)
    _fix_known_artifacts(reached)
    for name in ("HTTPValidationError", "ValidationError"):
        reached.setdefault(name, schemas[name])
        walk(schemas[name])
    doc = {
        "source": "mistralai/platform-docs-public openapi.yaml (v1.7.7), 55 seed operations and "
                  f"{sum(not row.seed for row in OPERATIONS)} extras",
        "operations": operations,
        "schemas": dict(sorted(reached.items())),
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(operations)} operations, {len(reached)} schemas")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "spec" / "mistral-openapi.yaml"))
