"""Which catalog models can be fine-tuned here, and the ids of the models a job makes.

Completion jobs train a LoRA on a local llama.cpp chat model's GGUF (the entry's ``path`` or bundled ``asset``);
classifier jobs train a head over the catalog's embedding encoder (``fine_tuning_classifier_encoder``), so any chat
model id Mistral accepts for classifier jobs (``ministral-3b-latest`` ...) is accepted when it resolves to a chat
model of the catalog. Anything else is a 400 naming the model.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from mistral_gateway.config import ModelEntry
from mistral_gateway.echo import shorten
from mistral_gateway.engines.manager import kind_of
from mistral_gateway.errors import BadRequest
from mistral_gateway.services.models import ModelCatalog

__all__ = ["Base", "fine_tuned_id", "resolve_base"]

LOCAL_ENGINES = ("llama.cpp", "fake")  # "fake": the deterministic stand-in the tests configure


@dataclass(frozen=True, slots=True)
class Base:
    model: str  # as the job names it (the fine-tuned model's ``root``)
    entry: ModelEntry  # the catalog entry the name resolves to
    job_type: str
    encoder: ModelEntry | None = None  # classifier jobs: the embedding model the head reads

    @property
    def capabilities(self) -> tuple[str, ...]:
        if self.job_type == "classifier":
            return ("classification",)
        return tuple(c for c in self.entry.capabilities if c in ("completion_chat", "completion_fim",
                                                                  "function_calling"))

    @property
    def max_context_length(self) -> int:
        return (self.encoder or self.entry).max_context_length


def resolve_base(catalog: ModelCatalog, model: str, job_type: str, encoder_name: str) -> Base:
    entry = catalog.resolve(model)
    chat = entry is not None and kind_of(entry) == "text" and "completion_chat" in entry.capabilities
    if job_type == "classifier":
        encoder = catalog.resolve(encoder_name)
        if not chat:
            raise BadRequest(f"model {shorten(model)!r} cannot be fine-tuned as a classifier here: name a chat model "
                             "of the catalog (e.g. ministral-3b-latest); the head is trained on the embedding "
                             f"model {shorten(encoder_name)!r}", param="model", code="MODEL_NOT_FINE_TUNABLE")
        if encoder is None or kind_of(encoder) != "embedding" or not encoder.served_locally:
            raise BadRequest(f"classifier jobs need a local embedding model: {shorten(encoder_name)!r} "
                             "(setting fine_tuning_classifier_encoder) is not one", param="model",
                             code="MODEL_NOT_FINE_TUNABLE")
        assert entry is not None
        return Base(model, entry, job_type, encoder)
    if not (chat and entry is not None and entry.engine in LOCAL_ENGINES and entry.served_locally
            and (entry.path or entry.asset)):
        raise BadRequest(f"model {shorten(model)!r} cannot be fine-tuned here: completion jobs train local "
                         "llama.cpp chat models with a GGUF (see GET /v1/models, capability fine_tuning)",
                         param="model", code="MODEL_NOT_FINE_TUNABLE")
    return Base(model, entry, job_type)


def fine_tuned_id(job_type: str, model: str, suffix: str | None, job_id: str, now: float | None = None) -> str:
    """Mistral's form: ``ft:<base>:<suffix or 8 hex>:<YYYYMMDD>:<8 hex>`` (classifiers: ``ft:classifier:<base>:...``).
    The hex parts derive from the job id, so a job finishing twice (a resumed handler) names the same model."""
    digest = hashlib.sha256(job_id.encode()).hexdigest()
    day = time.strftime("%Y%m%d", time.gmtime(time.time() if now is None else now))
    prefix = "ft:classifier" if job_type == "classifier" else "ft"
    return f"{prefix}:{model}:{suffix or digest[:8]}:{day}:{digest[-8:]}"
