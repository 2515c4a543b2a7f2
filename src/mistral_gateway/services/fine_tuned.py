"""A workspace's fine-tuned models as servable entries, and their lifecycle (update, archive, unarchive, delete).

A fine-tuned model is a row of ``FineTunedModelRepository``: its base (``root``) and the file that serves it
(``artifact``, relative to ``data_dir``). A completion model's artifact is a GGUF served with its base's engine
settings (context, slots, threads, FIM template, capabilities); a classifier's is a classifier-head file read over
the sentence encoder it was trained on. ``resolve`` turns the row into the ``ModelEntry`` the engines load, under
the model's own id, so ``EngineManager`` loads it once and ``release`` frees it.

Resolution runs only for names the configured catalog does not know (a catalog hit never gets here) and is cached
per (workspace, name), misses included, until the repository's epoch moves (a write by any process of this node)
or ``cache_seconds`` pass (writes by another node sharing the database).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import BadRequest, Forbidden, GatewayError, NotFound, ServiceUnavailable
from mistral_gateway.protocol.fine_tuned_models import (
    ArchiveFTModelOut,
    ClassifierFTModelOut,
    ClassifierTargetOut,
    CompletionFTModelOut,
    FTModelCapabilitiesOut,
    UnarchiveFTModelOut,
    UpdateFTModelIn,
)
from mistral_gateway.protocol.models import FTModelCard, ModelCapabilities
from mistral_gateway.services.epoch_cache import EpochCache
from mistral_gateway.services.fine_tuned_entries import (
    COMPLETION_CAPABILITIES,
    classifier_entry,
    completion_capabilities,
    completion_entry,
    embedding,
    head_header,
    is_lora_adapter,
)
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FineTunedModelRecord

if TYPE_CHECKING:  # services.models builds this service: importing it at run time would be circular
    from mistral_gateway.services.models import ModelCatalog

__all__ = ["FineTunedModels", "Resolution", "WorkspaceModels", "archived_error"]

log = logging.getLogger("mistral_gateway")

# Blocking: a name in the catalog, else a fine-tuned model of the workspace (ModelService.resolve); None: neither
WorkspaceModels = Callable[[str, str], ModelEntry | None]
MAX_ID_LENGTH = 255  # the id column's length: longer names are never fine-tuned ids


def archived_error(model_id: str) -> BadRequest:
    return BadRequest(f"model {model_id!r} is archived and refuses new requests; unarchive it with "
                      f"DELETE /v1/fine_tuning/models/{model_id}/archive", code="MODEL_ARCHIVED", param="model")


@dataclass(frozen=True, slots=True)
class Resolution:
    """A name's resolution in one workspace: an entry, nothing (no such model), or why the model cannot serve."""

    entry: ModelEntry | None = None
    error: Callable[[], GatewayError] | None = None  # archived, or its files are missing

    def value(self) -> ModelEntry | None:
        if self.error is not None:
            raise self.error()
        return self.entry


_NOTHING = Resolution()


class FineTunedModels:
    def __init__(self, catalog: ModelCatalog, repo: FineTunedModelRepository, data_dir: Path | None = None, *,
                 engines: EngineManager | None = None, cache_seconds: float = 5.0, cache_size: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._catalog = catalog
        self.repo = repo
        self._data_dir = data_dir or Path()
        self._engines = engines
        self._cache: EpochCache[tuple[str, str], Resolution] = EpochCache(repo.epoch, ttl=cache_seconds,
                                                                           size=cache_size, clock=clock)

    # -- resolution ---------------------------------------------------------------------------------------------
    def cached(self, workspace_id: str, name: str) -> Resolution | None:
        """Event-loop safe (one ``stat`` of the epoch file): the cached resolution, or None to call ``resolve``."""
        return _NOTHING if len(name) > MAX_ID_LENGTH else self._cache.get((workspace_id, name))

    def resolve(self, workspace_id: str, name: str) -> Resolution:
        """Blocking (reads the database on a cache miss): ``name`` as a fine-tuned model of the workspace."""
        hit = self.cached(workspace_id, name)
        if hit is not None:
            return hit
        epoch = self._cache.epoch()
        record = self.repo.get(workspace_id, name)
        resolution = _NOTHING if record is None else self._resolution(record)
        self._cache.put((workspace_id, name), resolution, epoch)
        return resolution

    def _resolution(self, record: FineTunedModelRecord) -> Resolution:
        model_id = record.id
        if record.archived:
            return Resolution(error=lambda: archived_error(model_id))
        path = self.artifact_path(record)
        if path is None or not path.is_file():
            shown = record.artifact or "none recorded"
            return Resolution(error=lambda: ServiceUnavailable(
                f"model {model_id!r} cannot be served: its file ({shown}) is missing from this server",
                code="MODEL_ARTIFACT_MISSING"))
        if record.job_type == "classifier":
            encoder = self._encoder(record, path)
            if encoder is None:
                return Resolution(error=lambda: ServiceUnavailable(
                    f"model {model_id!r} cannot be served: the sentence encoder its head was trained on is not a "
                    f"model of this server's catalog", code="MODEL_ENCODER_MISSING"))
            return Resolution(classifier_entry(record, path, encoder))
        base = self._base(record)
        if not is_lora_adapter(path):
            return Resolution(completion_entry(record, path, base))
        if base is None or not (base.path or base.asset):
            return Resolution(error=lambda: ServiceUnavailable(
                f"model {model_id!r} cannot be served: it is a LoRA adapter and its base {record.root!r} is not a "
                f"local model of this server's catalog", code="MODEL_BASE_MISSING"))
        # the base's weights with the adapter applied over them (an engine of its own, under the model's id)
        return Resolution(completion_entry(record, path, base).model_copy(
            update={"path": base.path, "asset": base.asset, "lora": str(path)}))

    def _base(self, record: FineTunedModelRecord) -> ModelEntry | None:
        base = self._catalog.resolve(record.root)
        if base is None or kind_of(base) != "text" or base.engine not in ("llama.cpp", "fake"):
            return None
        return base

    def _encoder(self, record: FineTunedModelRecord, head: Path) -> ModelEntry | None:
        """The catalog's embedding model the head reads: the job's base if it is one, else the encoder the head's
        header names (a catalog name, or a Hugging Face id whose last part is one), else the catalog's only one."""
        named = str((head_header(head).get("encoder") or {}).get("model") or "")
        for name in (record.root, named, named.rsplit("/", 1)[-1].lower()):
            entry = self._catalog.resolve(name) if name else None
            if entry is not None and embedding(entry):
                return entry
        encoders = [e for e in self._catalog.entries if embedding(e)]
        return encoders[0] if len(encoders) == 1 else None

    def artifact_path(self, record: FineTunedModelRecord) -> Path | None:
        """The artifact's path under ``data_dir``; None when there is none or it would leave the data dir."""
        if not record.artifact:
            return None
        relative = PurePosixPath(record.artifact)
        if relative.is_absolute() or ".." in relative.parts:
            return None
        return self._data_dir / relative

    # -- cards and lifecycle ------------------------------------------------------------------------------------
    def card(self, record: FineTunedModelRecord) -> FTModelCard:
        capabilities, context = self._capabilities(record)
        return FTModelCard(id=record.id, created=record.created_at, owned_by=record.workspace_id,
                           capabilities=ModelCapabilities(**dict.fromkeys(capabilities, True)), name=record.name,
                           description=record.description, max_context_length=context, job=record.job_id,
                           root=record.root, archived=record.archived)

    def _capabilities(self, record: FineTunedModelRecord) -> tuple[list[str], int]:
        if record.job_type == "classifier":
            return ["classification"], record.max_context_length
        base = self._base(record)
        if base is None:
            return [c for c in record.capabilities if c in COMPLETION_CAPABILITIES], record.max_context_length
        return completion_capabilities(base), base.max_context_length

    def get(self, workspace_id: str, model_id: str) -> FineTunedModelRecord:
        record = self.repo.get(workspace_id, model_id)
        if record is None:
            raise _not_found(model_id)
        return record

    def update(self, workspace_id: str, model_id: str,
               request: UpdateFTModelIn) -> CompletionFTModelOut | ClassifierFTModelOut:
        self._refuse_base(model_id)
        values = {name: getattr(request, name) for name in request.model_fields_set & {"name", "description"}}
        record = self.repo.update(workspace_id, model_id, **values)
        if record is None:
            raise _not_found(model_id)
        return self.model_out(record)

    def archive(self, workspace_id: str, model_id: str) -> ArchiveFTModelOut:
        self._set_archived(workspace_id, model_id, True)
        self.release(model_id)  # it refuses new requests: its weights need not stay in memory
        return ArchiveFTModelOut(id=model_id)

    def unarchive(self, workspace_id: str, model_id: str) -> UnarchiveFTModelOut:
        self._set_archived(workspace_id, model_id, False)
        return UnarchiveFTModelOut(id=model_id)

    def _set_archived(self, workspace_id: str, model_id: str, archived: bool) -> None:
        self._refuse_base(model_id)
        if self.repo.update(workspace_id, model_id, archived=archived) is None:
            raise _not_found(model_id)

    def _refuse_base(self, model_id: str) -> None:
        if self._catalog.resolve(model_id) is not None:
            raise Forbidden(f"model {model_id!r} is a base model; only fine-tuned models can be changed",
                            code="BASE_MODEL_NOT_MODIFIABLE", param="model_id")

    def delete(self, workspace_id: str, model_id: str) -> bool:
        """Remove the row, release its engine, then remove its artifact (a file of no other model)."""
        record = self.repo.get(workspace_id, model_id)
        if record is None or not self.repo.delete(workspace_id, model_id):
            return False
        self.release(model_id)
        path = self.artifact_path(record)
        if path is not None:
            try:
                path.unlink(missing_ok=True)  # the job's other files (checkpoints, logs) belong to the job
            except OSError as exc:  # the model is gone either way; the operator can remove the file
                log.warning("fine-tuned model %s deleted, but its file %s stays: %s", model_id, path, exc)
        return True

    def release(self, model_id: str) -> None:
        if self._engines is not None and self._engines.release(model_id):
            log.info("released the engine of fine-tuned model %s", model_id)

    def model_out(self, record: FineTunedModelRecord) -> CompletionFTModelOut | ClassifierFTModelOut:
        capabilities, context = self._capabilities(record)
        base = self._base(record)
        fields: dict[str, Any] = dict(
            id=record.id, created=record.created_at, owned_by=record.workspace_id, workspace_id=record.workspace_id,
            root=record.root, root_version=base.id if base is not None else record.root, archived=record.archived,
            name=record.name, description=record.description, max_context_length=context, job=record.job_id,
            capabilities=FTModelCapabilitiesOut(**{c: c in capabilities for c in FTModelCapabilitiesOut.model_fields}))
        if record.job_type != "classifier":
            return CompletionFTModelOut(**fields)
        path = self.artifact_path(record)
        targets = head_header(path).get("targets") if path is not None else None
        return ClassifierFTModelOut(**fields, classifier_targets=[
            ClassifierTargetOut(name=t["name"], labels=list(t["labels"]), weight=1.0,
                                loss_function="multi_class" if t.get("multi_label") else "single_class")
            for t in targets or () if isinstance(t, dict) and "name" in t and "labels" in t])


def _not_found(model_id: str) -> NotFound:
    shown = model_id if len(model_id) <= 100 else f"{model_id[:100]}…"
    return NotFound(f"model {shown!r} not found", code="MODEL_NOT_FOUND", param="model_id")
