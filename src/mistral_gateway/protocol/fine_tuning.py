"""Fine-tuning jobs API models (Mistral spec: JobIn, CompletionJobOut, ClassifierJobOut, the detailed forms,
JobsOut, LegacyJobMetadataOut). The spec's ranges are kept; every list and string has a bound besides."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, StringConstraints

from mistral_gateway.protocol.common import RequestModel, ResponseModel
from mistral_gateway.protocol.files import MAX_PAGE

__all__ = [
    "ACTIVE_STATUSES",
    "JOB_STATUSES",
    "MAX_STEPS",
    "MAX_TRAINING_FILES",
    "TERMINAL_STATUSES",
    "CheckpointOut",
    "ClassifierDetailedJobOut",
    "ClassifierJobOut",
    "ClassifierTargetIn",
    "ClassifierTargetOut",
    "CompletionDetailedJobOut",
    "CompletionJobOut",
    "CreateJobOut",
    "CreateJobQuery",
    "DetailedJobOut",
    "EventOut",
    "JobIn",
    "JobMetadataOut",
    "JobOut",
    "JobStatus",
    "JobsOut",
    "LegacyJobMetadataOut",
    "ListJobsQuery",
    "MetricOut",
    "TrainingFile",
    "TrainingParametersIn",
    "WandbIntegration",
    "WandbIntegrationOut",
    "fine_tuning_limits",
]

JobStatus = Literal["QUEUED", "STARTED", "VALIDATING", "VALIDATED", "RUNNING", "FAILED_VALIDATION", "FAILED",
                    "SUCCESS", "CANCELLED", "CANCELLATION_REQUESTED"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL_STATUSES = frozenset({"FAILED_VALIDATION", "FAILED", "SUCCESS", "CANCELLED"})
ACTIVE_STATUSES = frozenset({"STARTED", "RUNNING"})  # a trainer runs (or is being started)

MAX_TRAINING_FILES = 16
MAX_STEPS = 100_000  # training_steps; CPU training of more is days of work
MAX_TARGETS = 16
MAX_LABELS = 64
MAX_INTEGRATIONS = 4

FileId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TrainingFile(RequestModel):
    file_id: FileId
    weight: float = Field(1.0, gt=0, le=1000)


class TrainingParametersIn(RequestModel):
    """The completion set (CompletionTrainingParametersIn); a classifier job's set is the same without
    ``fim_ratio`` (ignored there)."""

    training_steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    learning_rate: float = Field(1e-4, ge=1e-8, le=1)
    weight_decay: float | None = Field(0.1, ge=0, le=1)
    warmup_fraction: float | None = Field(0.05, ge=0, le=1)
    epochs: float | None = Field(None, gt=0, le=1000)
    seq_len: int | None = Field(None, ge=100, le=32768)
    fim_ratio: float | None = Field(0.9, ge=0, le=1)


class WandbIntegration(RequestModel):
    type: Literal["wandb"] = "wandb"
    project: Name
    name: Name | None = None
    api_key: str = Field(min_length=40, max_length=40)  # checked, never stored nor echoed
    run_name: Name | None = None


class ClassifierTargetIn(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    labels: list[Label] = Field(min_length=1, max_length=MAX_LABELS)
    weight: float = Field(1.0, ge=0, le=1000)
    loss_function: Literal["single_class", "multi_class"] | None = None


class JobIn(RequestModel):
    model: str = Field(min_length=1, max_length=255)
    training_files: list[TrainingFile | FileId] = Field(default_factory=list, max_length=MAX_TRAINING_FILES,
                                                        description="Items {file_id, weight}; bare ids accepted.")
    validation_files: list[FileId] | None = Field(None, max_length=MAX_TRAINING_FILES)
    # the suffix becomes a part of the model id, whose parts ``:`` separates
    suffix: str | None = Field(None, max_length=18, pattern=r"^[A-Za-z0-9._-]*$")
    integrations: list[WandbIntegration] | None = Field(None, max_length=MAX_INTEGRATIONS)
    auto_start: bool = False
    invalid_sample_skip_percentage: float = Field(0, ge=0, le=0.5)
    job_type: Literal["completion", "classifier"] | None = None
    hyperparameters: TrainingParametersIn
    # refused unless empty (no repository access from here); any shape is read so the 400 can say so
    repositories: list[dict[str, Any]] | None = Field(None, max_length=16)
    classifier_targets: list[ClassifierTargetIn] | None = Field(None, max_length=MAX_TARGETS)


class CreateJobQuery(RequestModel):
    dry_run: bool | None = Field(None, description="true: estimate the job without creating it.")


class ListJobsQuery(RequestModel):
    page: int = Field(0, ge=0, le=MAX_PAGE)
    page_size: int = Field(100, ge=1, le=1000)
    model: str | None = Field(None, max_length=255)
    created_after: datetime | None = None
    created_before: datetime | None = None
    created_by_me: bool = False
    status: JobStatus | None = None
    wandb_project: str | None = Field(None, max_length=128)
    wandb_name: str | None = Field(None, max_length=128)
    suffix: str | None = Field(None, max_length=18)


# -- responses ----------------------------------------------------------------------------------------------------
class WandbIntegrationOut(ResponseModel):
    type: Literal["wandb"] = "wandb"
    project: str
    name: str | None = None
    run_name: str | None = None
    url: str | None = None


class JobMetadataOut(ResponseModel):
    expected_duration_seconds: int | None = None
    cost: float | None = None
    cost_currency: str | None = None
    train_tokens_per_step: int | None = None
    train_tokens: int | None = None
    data_tokens: int | None = None
    estimated_start_time: int | None = None


class LegacyJobMetadataOut(JobMetadataOut):
    deprecated: bool = True
    details: str
    epochs: float | None = None
    training_steps: int | None = None
    object: Literal["job.metadata"] = "job.metadata"


class EventOut(ResponseModel):
    name: str
    data: dict[str, Any] | None = None
    created_at: int


class MetricOut(ResponseModel):
    train_loss: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    # classifier jobs (this gateway's addition): validation metrics per target, e.g. {"valid_accuracy": 0.9}
    targets: dict[str, dict[str, float]] | None = None


class CheckpointOut(ResponseModel):
    metrics: MetricOut
    step_number: int
    created_at: int


class ClassifierTargetOut(ResponseModel):
    name: str
    labels: list[str]
    weight: float
    loss_function: Literal["single_class", "multi_class"]


class _JobOut(ResponseModel):
    id: str
    auto_start: bool
    model: str
    status: JobStatus
    created_at: int
    modified_at: int
    training_files: list[str]
    validation_files: list[str] | None = []
    object: Literal["job"] = "job"
    fine_tuned_model: str | None = None
    suffix: str | None = None
    integrations: list[WandbIntegrationOut] | None = None
    trained_tokens: int | None = None
    metadata: JobMetadataOut | None = None
    hyperparameters: dict[str, Any]


class CompletionJobOut(_JobOut):
    job_type: Literal["completion"] = "completion"
    repositories: list[dict[str, Any]] = []


class ClassifierJobOut(_JobOut):
    job_type: Literal["classifier"] = "classifier"
    classifier_targets: list[ClassifierTargetOut] | None = None


class CompletionDetailedJobOut(CompletionJobOut):
    events: list[EventOut] = []
    checkpoints: list[CheckpointOut] = []


class ClassifierDetailedJobOut(ClassifierJobOut):
    events: list[EventOut] = []
    checkpoints: list[CheckpointOut] = []
    classifier_targets: list[ClassifierTargetOut] = []  # type: ignore[assignment]


JobOut = CompletionJobOut | ClassifierJobOut
DetailedJobOut = CompletionDetailedJobOut | ClassifierDetailedJobOut
CreateJobOut = CompletionJobOut | ClassifierJobOut | LegacyJobMetadataOut


class JobsOut(ResponseModel):
    data: list[CompletionJobOut | ClassifierJobOut] = []
    object: Literal["list"] = "list"
    total: int


def fine_tuning_limits() -> dict[tuple[str, str, str], dict[str, Any]]:
    """What the fine-tuning service enforces beyond the request models, for the OpenAPI documents."""
    op = "jobs_api_routes_fine_tuning_create_fine_tuning_job"
    return {
        (op, "body", "model"): {"x-description": (
            "Completion jobs: a local llama.cpp chat model with a GGUF (e.g. `ministral-3b-latest`); classifier jobs: "
            "any chat model of the catalog, the head is trained on the embedding model "
            "`fine_tuning_classifier_encoder` (configuration). Anything else: 400 MODEL_NOT_FINE_TUNABLE.")},
        (op, "body", "training_files"): {"maxItems": MAX_TRAINING_FILES, "x-description": (
            "At least one file of this workspace uploaded with purpose `fine-tune` (400 INVALID_TRAINING_FILE "
            "otherwise). Items `{file_id, weight}` or bare file ids; `weight` is stored (the local trainer samples "
            "all lines alike).")},
        (op, "body", "suffix"): {"pattern": "^[A-Za-z0-9._-]*$", "x-description": (
            "Letters, digits, `.`, `_` and `-` only: it becomes a part of the model id, whose parts `:` separates.")},
        (op, "body", "repositories"): {"x-description": (
            "Must be empty or absent: this deployment cannot reach GitHub (400 REPOSITORIES_UNSUPPORTED).")},
        (op, "body", "integrations"): {"maxItems": MAX_INTEGRATIONS, "x-description": (
            "Stored and shown without `api_key`; external loggers are not reachable from this deployment, so "
            "nothing is sent (the job's events say so).")},
        (op, "body", "classifier_targets"): {"maxItems": MAX_TARGETS, "x-description": (
            "For classifier jobs (`job_type` classifier, implied when targets are given); refused for completion "
            "jobs (400). Names must differ. Left out, the targets are read from the training lines when they are "
            "validated: each `labels` key a target, its values the labels, `multi_class` where a line gives "
            "several (at most 16 targets of 64 labels).")},
    }
