"""Mistral's model families and the local model standing in for each: configuration data, overridable in TOML.

A family is a name prefix; every id made of the prefix, an optional size (``8b``, ``8x7b``) and an optional version
(``latest``, ``YYMM``, ``<major>``, ``<major>-<minor>`` or ``<major>.<minor>``) belongs to it, so a new dated id of a
known family resolves without a release (``services.model_ids`` holds the grammar).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ModelFamily", "default_model_families"]

CHAT = "qwen2.5-coder-1.5b-instruct"
SMALL = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
SPEECH = "whisper-base"


class ModelFamily(BaseModel):
    """Where a family's ids go. Tried in order: the catalog name ``<prefix>-<size>-latest`` (when the id has a
    size), ``<prefix>-latest``, a served catalog entry with capability ``prefer``, then ``model`` (any catalog name).
    ``model = None`` declares a family no local engine serves: its ids resolve (so they are not 404) but every
    operation answers 400 naming ``capabilities``, until a catalog entry takes the family over."""

    prefix: str = Field(max_length=48, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    model: str | None = None
    reasoning: bool = False  # chat answers carry a thinking chunk when reasoning_effort/prompt_mode ask for it
    prefer: str | None = None  # a capability, e.g. "vision" for the pixtral families
    capabilities: list[str] = Field(default_factory=list)  # what the family does at Mistral, for models = None


def _rows(model: str | None, prefixes: str, **extra: object) -> list[ModelFamily]:
    return [ModelFamily(prefix=p, model=model, **extra) for p in prefixes.split()]  # type: ignore[arg-type]


def default_model_families() -> list[ModelFamily]:
    """Every family in Mistral's model list, the SDK's examples and its legacy names (Dec 2026)."""
    return [
        *_rows(CHAT, "mistral-small mistral-medium mistral-large mistral-tiny mistral-saba open-mistral "
                     "open-mistral-nemo open-mixtral codestral codestral-mamba open-codestral-mamba devstral "
                     "devstral-small devstral-medium labs-devstral-small"),
        *_rows(CHAT, "magistral-small magistral-medium mistral-medium-3-5", reasoning=True),
        *_rows(CHAT, "pixtral pixtral-large mistral-large-pixtral", prefer="vision"),
        *_rows(SMALL, "ministral"),
        *_rows(EMBED, "mistral-embed codestral-embed"),
        *_rows(None, "mistral-moderation", capabilities=["moderation", "classification"]),
        *_rows(None, "mistral-ocr mistral-document-ai", capabilities=["ocr"]),
        *_rows(SPEECH, "voxtral-mini voxtral-small voxtral-mini-transcribe voxtral-mini-transcribe-realtime"),
        *_rows(None, "voxtral-tts", capabilities=["audio"]),
    ]
