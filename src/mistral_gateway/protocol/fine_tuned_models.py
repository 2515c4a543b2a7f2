"""Fine-tuned model operations (Mistral spec: UpdateFTModelIn, CompletionFTModelOut, ClassifierFTModelOut,
ArchiveFTModelOut, UnarchiveFTModelOut)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "MAX_FT_DESCRIPTION",
    "MAX_FT_NAME",
    "ArchiveFTModelOut",
    "ClassifierFTModelOut",
    "ClassifierTargetOut",
    "CompletionFTModelOut",
    "FTModelCapabilitiesOut",
    "FTModelOut",
    "UnarchiveFTModelOut",
    "UpdateFTModelIn",
]

MAX_FT_NAME = 255  # the column's length
MAX_FT_DESCRIPTION = 10_000  # as an agent's description


class UpdateFTModelIn(RequestModel):
    """The fields sent replace the stored ones (``null`` clears one); fields not sent stay."""

    name: str | None = Field(None, max_length=MAX_FT_NAME)
    description: str | None = Field(None, max_length=MAX_FT_DESCRIPTION)


class FTModelCapabilitiesOut(ResponseModel):
    completion_chat: bool = True
    completion_fim: bool = False
    function_calling: bool = False
    fine_tuning: bool = False
    classification: bool = False


class ClassifierTargetOut(ResponseModel):
    name: str
    labels: list[str]
    weight: float
    loss_function: Literal["single_class", "multi_class"]


class _FTModelOut(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    workspace_id: str
    root: str
    root_version: str
    archived: bool
    name: str | None = None
    description: str | None = None
    capabilities: FTModelCapabilitiesOut
    max_context_length: int = 32768
    aliases: list[str] = Field(default_factory=list)
    job: str


class CompletionFTModelOut(_FTModelOut):
    model_type: Literal["completion"] = "completion"


class ClassifierFTModelOut(_FTModelOut):
    classifier_targets: list[ClassifierTargetOut]
    model_type: Literal["classifier"] = "classifier"


FTModelOut = Annotated[CompletionFTModelOut | ClassifierFTModelOut, Field(discriminator="model_type")]


class _ArchiveStateOut(ResponseModel):
    id: str
    object: Literal["model"] = "model"


class ArchiveFTModelOut(_ArchiveStateOut):
    archived: bool = True


class UnarchiveFTModelOut(_ArchiveStateOut):
    archived: bool = False
