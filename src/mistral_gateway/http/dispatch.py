"""Route tables built from the registry: native paths, and LowCodeAPI new- and old-format paths."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mistral_gateway.errors import BadRequest
from mistral_gateway.registry import PATH_PARAM, Operation, Registry

__all__ = ["Match", "RouteTable", "resolve_old_format"]


@dataclass
class _Route:
    template: str
    regex: re.Pattern[str]
    param_names: tuple[str, ...]
    methods: dict[str, Operation] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Match:
    template: str
    params: dict[str, str]
    methods: dict[str, Operation]


class RouteTable:
    """Matches a path (without the dialect prefix) to the operations served there, keyed by method.

    Static routes are tried before parameterised ones, so ``/v1/agents/completions`` never reads as an agent id.
    Twin operations (same method and path, chosen by the body's ``stream``) register the non-stream one here; an
    operation's ``method_aliases`` reach it too.
    """

    def __init__(self, registry: Registry) -> None:
        routes: dict[str, _Route] = {}
        for op in registry:
            route = routes.get(op.path)
            if route is None:
                names = op.path_param_names
                pattern = "^" + PATH_PARAM.sub(r"(?P<\1>[^/]+)", re.escape(op.path).replace(r"\{", "{")
                                           .replace(r"\}", "}")) + "$"
                route = routes[op.path] = _Route(op.path, re.compile(pattern), names)
            if op.method in route.methods and op.stream == "always":
                continue
            route.methods[op.method] = op
            for alias in op.method_aliases:
                route.methods.setdefault(alias, op)
        self._routes = sorted(routes.values(), key=lambda r: (len(r.param_names), -len(r.template)))
        self._static = {r.template: r for r in self._routes if not r.param_names}

    def match(self, path: str) -> Match | None:
        static = self._static.get(path)
        if static is not None:
            return Match(static.template, {}, static.methods)
        for route in self._routes:
            if not route.param_names:
                continue
            m = route.regex.match(path)
            if m is not None:
                return Match(route.template, m.groupdict(), route.methods)
        return None


def resolve_old_format(
    op: Operation, params: dict[str, str], query: Mapping[str, str], *, allow_new: bool, allow_old: bool
) -> tuple[dict[str, str], bool]:
    """LowCodeAPI path parameters: ``/files/{id}`` (new) or ``/files/file_id?file_id=...`` (old).

    Returns the resolved values and whether the old format was used. Raises BadRequest when the two forms
    disagree, or when an old-format path lacks its query value.
    """
    resolved: dict[str, str] = {}
    old = False
    for name, value in params.items():
        from_query = query.get(name)
        if value == name:  # the parameter's own name in the path: old format
            if from_query is None or from_query == "":
                raise BadRequest(f"old-format path needs the query parameter {name!r} (e.g. ?{name}=...)",
                                 code="MISSING_PATH_PARAMETER", param=name)
            resolved[name] = from_query
            old = True
        else:
            if from_query is not None and from_query != value:
                raise BadRequest(f"path parameter {name!r} is given twice with different values "
                                 f"({value!r} in the path, {from_query!r} in the query)",
                                 code="CONFLICTING_PATH_PARAMETER", param=name)
            resolved[name] = value
    if old and not allow_old:
        raise BadRequest("the old URL format (path parameters as query parameters) is disabled on this server",
                         code="OLD_FORMAT_DISABLED")
    if params and not old and not allow_new:
        raise BadRequest("the new URL format (path parameters in the path) is disabled on this server",
                         code="NEW_FORMAT_DISABLED")
    return resolved, old
