"""Models API models (Mistral spec: ModelList, BaseModelCard, FTModelCard, DeleteModelOut, ModelCapabilities)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "CAPABILITY_NAMES",
    "BaseModelCard",
    "DeleteModelOut",
    "FTModelCard",
    "ListModelsQuery",
    "ModelCapabilities",
    "ModelCard",
    "ModelList",
]


class ModelCapabilities(ResponseModel):
    completion_chat: bool = False
    function_calling: bool = False
    reasoning: bool = False  # SDK 3.7.0's field: thinking chunks on reasoning_effort / prompt_mode "reasoning"
    completion_fim: bool = False
    fine_tuning: bool = False
    vision: bool = False
    ocr: bool = False
    classification: bool = False
    moderation: bool = False
    audio: bool = False
    audio_transcription: bool = False


CAPABILITY_NAMES = tuple(ModelCapabilities.model_fields)


class _Card(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mistralai"
    capabilities: ModelCapabilities
    name: str | None = None
    description: str | None = None
    max_context_length: int = 32768
    aliases: list[str] = Field(default_factory=list)
    deprecation: str | None = None
    deprecation_replacement_model: str | None = None
    default_model_temperature: float | None = None


class BaseModelCard(_Card):
    type: Literal["base"] = "base"


class FTModelCard(_Card):
    type: Literal["fine-tuned"] = "fine-tuned"
    job: str
    root: str
    archived: bool = False


ModelCard = Annotated[BaseModelCard | FTModelCard, Field(discriminator="type")]


class ModelList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class DeleteModelOut(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class ListModelsQuery(RequestModel):
    provider: str | None = None
    model: str | None = None
