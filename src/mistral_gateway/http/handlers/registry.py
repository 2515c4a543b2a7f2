"""Which handler serves which operation: bound by operation id (the registry names no HTTP module)."""

from __future__ import annotations

from mistral_gateway.http.handlers import Handler, batch, chat, classifiers, embeddings, files, models
from mistral_gateway.registry import Registry

__all__ = ["HANDLERS", "bind"]

HANDLERS: dict[str, Handler] = {
    "create_chat_completions": chat.create_chat_completions,
    "create_fim_completions": chat.create_fim_completions,
    "create_embeddings": embeddings.create_embeddings,
    "list_files": files.list_files,
    "upload_file": files.upload_file,
    "retrieve_file": files.retrieve_file,
    "delete_file": files.delete_file,
    "download_file": files.download_file,
    "get_signed_url": files.get_signed_url,
    "list_available_models": models.list_models,
    "retrieve_model": models.retrieve_model,
    "delete_model": models.delete_model,
    "create_batch_job": batch.create_batch_job,
    "get_batch_job": batch.get_batch_job,
    "get_batch_jobs": batch.get_batch_jobs,
    "cancel_batch_job": batch.cancel_batch_job,
    "moderations": classifiers.moderations,
    "chat_moderations": classifiers.chat_moderations,
    "classifications": classifiers.classifications,
    "chat_classifications": classifiers.chat_classifications,
}


def bind(registry: Registry) -> dict[str, Handler]:
    """The handlers of the registry's implemented operations; raises when a row and this table disagree."""
    implemented = {op.id for op in registry if op.implemented}
    if implemented != set(HANDLERS):
        raise ValueError(f"registry rows marked implemented {sorted(implemented - set(HANDLERS))} have no handler; "
                         f"handlers {sorted(set(HANDLERS) - implemented)} serve no implemented row")
    return dict(HANDLERS)
