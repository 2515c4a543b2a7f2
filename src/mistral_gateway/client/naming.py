"""Client methods from the registry rows: each row's ``client`` (``namespace.method``, see ``registry.naming``).
An operation that can stream (``stream: optional``) gets a second method: ``stream`` next to ``complete``, else
``<name>_stream``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mistral_gateway.registry import Operation

__all__ = ["MethodSpec", "method_specs"]

@dataclass(frozen=True, slots=True)
class MethodSpec:
    namespace: str
    name: str
    op_id: str
    stream: bool  # this method returns an iterator of server-sent events

    @property
    def qualname(self) -> str:
        return f"{self.namespace}.{self.name}"


def method_specs(operations: tuple[Operation, ...] | list[Operation]) -> list[MethodSpec]:
    """Every client method, in registry order; raises if two operations would get the same name."""
    specs: list[MethodSpec] = []
    for op in operations:
        assert op.client is not None, "the registry names every operation's client method"
        namespace, name = op.client.split(".")
        if op.stream == "always":
            specs.append(MethodSpec(namespace, name, op.id, True))
            continue
        specs.append(MethodSpec(namespace, name, op.id, False))
        if op.stream == "optional":
            specs.append(MethodSpec(namespace, "stream" if name == "complete" else f"{name}_stream", op.id, True))
    seen: dict[str, str] = {}
    for spec in specs:
        if seen.setdefault(spec.qualname, spec.op_id) != spec.op_id:
            raise ValueError(f"client method {spec.qualname} would serve both {seen[spec.qualname]} and {spec.op_id}")
    return specs
