"""The methods of a client, built from the registry at construction: ``client.files.retrieve`` is an
``OperationMethod`` bound to the ``retrieve_file`` row, with a docstring and signature derived from that row."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

from mistral_gateway.client.calls import signature_for
from mistral_gateway.client.naming import MethodSpec, method_specs
from mistral_gateway.registry import Operation, Registry

__all__ = ["DEFAULT_BASE_URL", "Namespace", "OperationMethod", "build_namespaces", "default_registry",
           "normalize_base_url", "resolve_base_url", "resolve_token"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
BASE_URL_ENV = "MISTRAL_GATEWAY_BASE_URL"
TOKEN_ENV = "MISTRAL_GATEWAY_TOKEN"  # noqa: S105 - the variable's name, not a secret

Invoke = Callable[[Operation, MethodSpec, tuple[Any, ...], dict[str, Any]], Any]


@functools.cache
def default_registry() -> Registry:
    return Registry.load()


def normalize_base_url(url: str) -> str:
    """``http://host:8080/``, ``http://host:8080/mistralai`` -> ``http://host:8080``: also the memory's key."""
    url = url.strip().rstrip("/")
    if url.endswith("/mistralai"):
        url = url[: -len("/mistralai")]
    return url


def resolve_base_url(base_url: str | None) -> str:
    return normalize_base_url(base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)


def resolve_token(api_token: str | None) -> str | None:
    return api_token or os.environ.get(TOKEN_ENV) or None


def _doc(op: Operation, spec: MethodSpec) -> str:
    lines = [f"{op.name}: {op.method} {op.lowcode_path} (operation {op.id!r}, category {op.category})."]
    if names := op.path_param_names:
        lines.append(f"Path parameters (positional or keyword): {', '.join(names)}.")
    if op.query_params:
        lines.append(f"Query parameters: {', '.join(p.name for p in op.query_params)}.")
    if op.body_params:
        lines.append(f"Body fields ({op.body}): {', '.join(p.name for p in op.body_params)}.")
    if op.body == "multipart":
        lines.append("file: a path (streamed from disk), bytes, a binary file or (name, content[, type]); "
                     "filename= overrides the name; progress=callable(done, total).")
    if op.response_kind == "binary":
        lines.append("Returns bytes, or writes to to= (a path, a directory or a binary file); progress= as above.")
    elif spec.stream:
        lines.append("Returns an iterator of server-sent events (typed chunks where the registry knows them).")
    elif op.response is not None:
        lines.append(f"Returns {getattr(op.response, '__name__', str(op.response))}.")
    else:
        lines.append("Returns the unwrapped JSON data.")
    if not op.implemented:
        lines.append("Not implemented by this gateway build yet: the server answers 501.")
    return "\n".join(lines)


class OperationMethod:
    """One client method: calls ``invoke`` with its registry row. Arguments are checked against the row."""

    def __init__(self, invoke: Invoke, op: Operation, spec: MethodSpec) -> None:
        self._invoke = invoke
        self.operation = op
        self.spec = spec
        self.__name__ = spec.name
        self.__qualname__ = spec.qualname
        self.__doc__ = _doc(op, spec)
        self.__signature__ = signature_for(op, spec.stream)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._invoke(self.operation, self.spec, args, kwargs)

    def __repr__(self) -> str:
        return f"<client method {self.spec.qualname} -> {self.operation.method} {self.operation.lowcode_path}>"


class Namespace:
    """The methods of one category (``client.files``)."""

    def __init__(self, name: str, methods: list[OperationMethod]) -> None:
        self._name = name
        self._methods = {m.__name__: m for m in methods}
        for method in methods:
            setattr(self, method.__name__, method)

    def __iter__(self) -> Iterator[OperationMethod]:
        return iter(self._methods.values())

    def __repr__(self) -> str:
        return f"<client namespace {self._name}: {', '.join(self._methods)}>"


def build_namespaces(registry: Registry, invoke: Invoke) -> dict[str, Namespace]:
    grouped: dict[str, list[OperationMethod]] = {}
    for spec in method_specs(registry.operations):
        grouped.setdefault(spec.namespace, []).append(OperationMethod(invoke, registry.get(spec.op_id), spec))
    return {name: Namespace(name, grouped.get(name, [])) for name in registry.namespaces}
