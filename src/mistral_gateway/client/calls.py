"""Turning one method call into a request description: which arguments go in the path, the query and the body,
validated by the operation's own pydantic models (the very ones the server validates with). No I/O here."""

from __future__ import annotations

import inspect
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydantic

from mistral_gateway.client.errors import ValidationError
from mistral_gateway.client.progress import Progress, ProgressReader
from mistral_gateway.registry import Operation

__all__ = ["PreparedCall", "prepare", "signature_for"]


@dataclass
class PreparedCall:
    op: Operation
    stream: bool  # an SSE answer is expected
    path_values: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    form: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)  # name -> path | bytes | binary file | (name, content[, type])
    filename: str | None = None  # overrides the uploaded file's name
    progress: Progress | None = None  # upload progress (multipart) or download progress (binary)
    to: str | os.PathLike[str] | IO[bytes] | None = None  # where a binary answer goes (None: returned as bytes)

    @property
    def binary(self) -> bool:
        return self.op.response_kind == "binary"

    @contextmanager
    def opened_files(self) -> Iterator[dict[str, Any]]:
        """httpx ``files=``: paths opened lazily and streamed (never read whole), wrapped to report progress."""
        if not self.files:
            yield {}
            return
        with ExitStack() as stack:
            out: dict[str, Any] = {}
            for name, value in self.files.items():
                filename, content, content_type = _file_parts(value, self.filename)
                if isinstance(content, (str, os.PathLike)):
                    content = stack.enter_context(open(content, "rb"))  # closed by the stack
                if self.progress is not None:
                    content = ProgressReader(io.BytesIO(content) if isinstance(content, bytes) else content,
                                             self.progress)
                out[name] = (filename, content, content_type) if content_type else (filename, content)
            yield out


def _model_names(model: type | None) -> set[str]:
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return set()
    names = set(model.model_fields)
    names |= {f.alias for f in model.model_fields.values() if f.alias}
    return names


def _query_names(op: Operation) -> set[str]:
    return _model_names(op.query) | {p.name for p in op.query_params}


def _body_names(op: Operation) -> set[str]:
    return _model_names(op.request) | {p.name for p in op.body_params}


def _validate(model: type | None, values: dict[str, Any], where: str, instance: Any = None) -> dict[str, Any]:
    """Validate with the operation's model; fields only the spec knows (not the model) pass through unchanged."""
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        base = instance.model_dump(mode="json", by_alias=True, exclude_unset=True) if instance is not None else {}
        return {**base, **values}
    known = _model_names(model)
    extra = {k: v for k, v in values.items() if k not in known}
    try:
        if instance is not None:
            merged = {**instance.model_dump(by_alias=True, exclude_unset=True), **values}
            checked = model.model_validate(merged)
        else:
            checked = model.model_validate(values)
    except pydantic.ValidationError as exc:
        detail = [{"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]}
                  for err in exc.errors(include_url=False)]
        first = detail[0]
        raise ValidationError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", status=422,
                              detail=detail) from None
    return {**checked.model_dump(mode="json", by_alias=True, exclude_unset=True), **extra}


def prepare(op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any], *, stream: bool, label: str) -> PreparedCall:
    """Sort ``args``/``kwargs`` into path, query and body; raise TypeError for arguments the operation lacks."""
    kwargs = dict(kwargs)
    call = PreparedCall(op=op, stream=stream)
    if op.body == "multipart":
        call.progress = kwargs.pop("progress", None)
        call.filename = kwargs.pop("filename", None)
    elif call.binary:
        call.progress = kwargs.pop("progress", None)
        call.to = kwargs.pop("to", None)
    instance = kwargs.pop("request", None)
    positional = list(args)
    if positional and isinstance(positional[-1], pydantic.BaseModel) and instance is None:
        instance = positional.pop()
    if instance is not None and op.body != "json":
        raise TypeError(f"{label}() takes no request model: {op.name} has no JSON body")
    names = op.path_param_names
    slots = list(names) + (["file"] if op.body == "multipart" else [])
    if len(positional) > len(slots):
        raise TypeError(f"{label}() takes at most {len(slots)} positional argument(s) ({', '.join(slots) or 'none'})")
    for name, value in zip(slots, positional, strict=False):
        if name in kwargs:
            raise TypeError(f"{label}() got multiple values for argument {name!r}")
        kwargs[name] = value
    for name in names:
        if name not in kwargs or kwargs[name] in (None, ""):
            raise TypeError(f"{label}() missing required argument {name!r}")
        call.path_values[name] = str(kwargs.pop(name))
    query_names, body_names = _query_names(op), _body_names(op)
    query = {k: kwargs.pop(k) for k in list(kwargs) if k in query_names and k not in body_names}
    if op.body == "none" and kwargs:
        raise TypeError(f"{label}() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
    unknown = sorted(set(kwargs) - body_names) if body_names else []
    if unknown:
        raise TypeError(f"{label}() got unexpected keyword argument(s): {', '.join(unknown)}")
    call.query = {k: v for k, v in _validate(op.query, query, "query").items() if v is not None}
    if (op.stream != "never" or op.twin) and kwargs.get("stream", stream) != stream:  # twins: see the registry
        hint = "use the streaming method" if not stream else "use the non-streaming method"
        raise TypeError(f"{label}() does not take stream={kwargs['stream']!r}; {hint}")
    if op.stream != "never":
        kwargs["stream"] = stream  # the body's ``stream`` picks the answer's shape: the method decides it
    if op.body == "json":
        call.json = _validate(op.request, kwargs, "body", instance)
    elif op.body == "multipart":
        file_fields = {p.name for p in op.body_params if p.type == "file"} or {"file"}
        call.files = {k: kwargs.pop(k) for k in list(kwargs) if k in file_fields and kwargs[k] is not None}
        call.form = {k: _form_value(v) for k, v in kwargs.items() if v is not None}
    return call


def _form_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, pydantic.BaseModel)):
        return json.dumps(value.model_dump(mode="json") if isinstance(value, pydantic.BaseModel) else value)
    if isinstance(value, (list, tuple)):
        return [_form_value(v) for v in value]
    return value


def _file_parts(value: Any, filename: str | None) -> tuple[str, Any, str | None]:
    if isinstance(value, tuple):
        name, content, *rest = value
        return filename or name, content, rest[0] if rest else None
    if isinstance(value, (str, os.PathLike)):
        return filename or Path(value).name, value, None
    if isinstance(value, (bytes, bytearray)):
        return filename or "upload", bytes(value), None
    return filename or Path(str(getattr(value, "name", "upload"))).name, value, None


def signature_for(op: Operation, stream: bool) -> inspect.Signature:
    """A signature for ``help()`` and editors: path parameters first, then keyword-only query and body fields."""
    P = inspect.Parameter
    params = [P(name, P.POSITIONAL_OR_KEYWORD) for name in op.path_param_names]
    if op.body == "multipart":
        params.append(P("file", P.POSITIONAL_OR_KEYWORD))
    seen = {p.name for p in params} | {"stream"}
    for name in sorted(_query_names(op)) + sorted(_body_names(op)):
        if name not in seen and name.isidentifier():
            seen.add(name)
            params.append(P(name, P.KEYWORD_ONLY, default=None))
    extras: Mapping[str, tuple[str, ...]] = {"multipart": ("filename", "progress")}
    for name in extras.get(op.body, ()) + (("to", "progress") if op.response_kind == "binary" else ()):
        if name not in seen:
            seen.add(name)
            params.append(P(name, P.KEYWORD_ONLY, default=None))
    return inspect.Signature(params)

