"""Which handler serves which operation, bound by operation id (the registry names no HTTP module).

An implemented row gets its own handler from ``HANDLERS`` if it has one, else ``standard`` (which parses what the
row declares). Multipart bodies always need their own.
"""

from __future__ import annotations

from collections.abc import Collection

from mistral_gateway.http.handlers import Handler, agents, audio, batch, files, libraries, standard
from mistral_gateway.registry import Registry

__all__ = ["HANDLERS", "bind"]

HANDLERS: dict[str, Handler] = {
    "upload_file": files.upload_file,
    "get_signed_url": files.get_signed_url,
    "get_batch_jobs": batch.get_batch_jobs,
    "update_agent_version": agents.update_agent_version,
    "create_transcription": audio.create_transcription,
    "create_streaming_transcription": audio.create_transcription,  # one route: the form's stream decides
    "create_library_document": libraries.upload_document,
}


def bind(registry: Registry, operations: Collection[str] | None = None) -> dict[str, Handler]:
    """The handlers of the registry's implemented operations; raises ValueError when a row and the handlers (or
    the application layer's ``operations``, if given) disagree."""
    implemented = {op.id: op for op in registry if op.implemented}
    problems = [f"handlers {sorted(set(HANDLERS) - set(implemented))} serve no implemented row"
                ] if set(HANDLERS) - set(implemented) else []
    if operations is not None and set(implemented) - set(operations):
        problems.append(f"implemented rows {sorted(set(implemented) - set(operations))} have no application-layer "
                        "operation")
    multipart = sorted(i for i, op in implemented.items() if op.body == "multipart" and i not in HANDLERS)
    if multipart:
        problems.append(f"multipart rows {multipart} need a handler of their own (HANDLERS)")
    if problems:
        raise ValueError("; ".join(problems))
    return {op_id: HANDLERS.get(op_id, standard) for op_id in implemented}
