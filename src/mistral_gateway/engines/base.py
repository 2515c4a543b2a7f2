"""Engine protocols: the only surface services see. Real adapters (llama.cpp, sentence-transformers) and the
deterministic fakes used by unit tests implement the same few methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "MODERATION_CATEGORIES",
    "SAMPLE_RATE",
    "ChatMessage",
    "Classification",
    "ClassifierEngine",
    "ClassifierTarget",
    "ClassifierTargetSpec",
    "ClassifierTrainerEngine",
    "ClassifierTrainingSpec",
    "ContextOverflow",
    "Delta",
    "EmbeddingEngine",
    "Embeddings",
    "EngineBusy",
    "EngineError",
    "EngineUnavailable",
    "Generation",
    "ImageInput",
    "InvalidInput",
    "OcrEngine",
    "OcrImage",
    "OcrOptions",
    "OcrPage",
    "OcrTable",
    "SamplingParams",
    "Segment",
    "SpeechEngine",
    "TextEngine",
    "TrainerEngine",
    "TrainingEvent",
    "TrainingHandle",
    "TrainingProgress",
    "TrainingSpec",
    "Transcript",
    "TranscriptionOptions",
    "Word",
]

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An image of a message, already fetched and checked: its encoded bytes (png, jpeg, webp or gif) and where in
    the message's text it stands (a character offset into ``content``)."""

    data: bytes
    offset: int
    mime: str = "image/png"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message already normalised to text (content chunks joined), in the engine's terms."""

    role: str
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()  # OpenAI/Mistral shape: {"id", "type", "function": {name, arguments}}
    tool_call_id: str | None = None
    name: str | None = None
    images: tuple[ImageInput, ...] = ()  # only for models with the 'vision' capability


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int | None = None  # None: until the context is full
    min_tokens: int = 0
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: str | None = None  # a constraint in the engine's grammar language (llguidance / GBNF)
    json_schema: dict[str, Any] | None = None  # output must validate against this schema


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed piece. The last one has ``finish_reason`` and the token counts set."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()  # set by the chat service, whole calls (never by engines)
    thinking: bool = False  # set by the chat service: a piece of the reasoning, not of the answer


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    token_counts: list[int] = field(default_factory=list)


class TextEngine(Protocol):
    """A loaded text model. ``render`` applies the model's own chat template; ``complete``/``stream`` generate
    from a raw prompt (special tokens in it are honoured, so FIM prompts work the same way)."""

    context_length: int

    async def render(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None,
                     *, continue_last: bool = False) -> str: ...

    async def complete(self, prompt: str, params: SamplingParams) -> Generation: ...

    def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]: ...


class EmbeddingEngine(Protocol):
    dimensions: int
    max_tokens: int

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...


# Mistral's moderation categories (v1 models, mistral-moderation-2411), in the order its responses list them.
MODERATION_CATEGORIES = ("sexual", "hate_and_discrimination", "violence_and_threats",
                         "dangerous_and_criminal_content", "selfharm", "health", "financial", "law", "pii")


@dataclass(frozen=True, slots=True)
class ClassifierTarget:
    """One question a classifier answers. A multi-label target scores each label on its own (0-1 each, several may
    hold: moderation's categories); a single-label one spreads 1.0 over its labels (sentiment)."""

    name: str
    labels: tuple[str, ...]
    multi_label: bool = False


@dataclass(frozen=True, slots=True)
class Classification:
    """One input's scores: target name -> label -> score in [0, 1]; ``tokens`` the encoder read (all chunks)."""

    scores: dict[str, dict[str, float]]
    tokens: int


class ClassifierEngine(Protocol):
    """A loaded classifier: heads over a text encoder. Inputs longer than ``max_tokens`` are scored in chunks and
    the maximum over chunks is reported. ``thresholds`` are the head's default decision points per label of its
    multi-label targets (configuration may override them)."""

    targets: tuple[ClassifierTarget, ...]
    thresholds: dict[str, float]
    max_tokens: int

    async def classify(self, texts: Sequence[str]) -> list[Classification]: ...


@dataclass(frozen=True, slots=True)
class OcrOptions:
    pages: tuple[int, ...] | None = None  # 0-based page indexes, in the order asked; None: every page
    max_pages: int = 1000  # more pages selected than this: InvalidInput, raised before any page is read
    image_limit: int | None = None  # at most this many images extracted from the whole document
    image_min_size: int | None = None  # images narrower or shorter than this many pixels are not extracted
    include_image_base64: bool = False
    table_format: Literal["markdown", "html"] | None = None  # None: tables inline in the page's markdown
    extract_header: bool = False
    extract_footer: bool = False


@dataclass(frozen=True, slots=True)
class OcrImage:
    id: str  # "img-0.jpeg": numbered across the document; the markdown links it as ![img-0.jpeg](img-0.jpeg)
    top_left_x: int  # pixels of the page at its ``dpi``
    top_left_y: int
    bottom_right_x: int
    bottom_right_y: int
    image_base64: str | None = None  # a data URL, only when include_image_base64


@dataclass(frozen=True, slots=True)
class OcrTable:
    id: str  # "tbl-0.md" / "tbl-0.html": the markdown links it as [tbl-0.md](tbl-0.md) when tables are separate
    content: str
    format: Literal["markdown", "html"]


@dataclass(frozen=True, slots=True)
class OcrPage:
    index: int  # 0-based, of the document
    markdown: str
    images: tuple[OcrImage, ...]
    width: int  # pixels at ``dpi``
    height: int
    dpi: int
    tables: tuple[OcrTable, ...] = ()  # only with OcrOptions.table_format
    header: str | None = None  # only with extract_header
    footer: str | None = None


class OcrEngine(Protocol):
    """Reads a document (PDF, or one image: PNG, JPEG, WebP, TIFF; recognised by its bytes) into markdown pages.
    An unreadable document or a bad page selection raises InvalidInput, whose message is safe to show."""

    async def read(self, document: bytes, options: OcrOptions) -> list[OcrPage]: ...


SAMPLE_RATE = 16_000  # what speech engines read: mono float32 PCM in [-1, 1] at 16 kHz


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    language: str | None = None  # ISO 639-1; None: detected from the audio
    temperature: float = 0.0
    word_timestamps: bool = False
    prompt: str | None = None  # initial prompt (the request's context_bias): spellings the decoder should prefer


@dataclass(frozen=True, slots=True)
class Word:
    start: float  # seconds from the start of the audio
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(slots=True)
class Transcript:
    """A transcription under way: ``language`` and ``duration`` are known before any text; ``segments`` yields each
    segment as soon as it is decoded (closing it early stops the decoding)."""

    language: str
    duration: float  # seconds of audio
    segments: AsyncIterator[Segment]


class SpeechEngine(Protocol):
    """A loaded speech-to-text model. ``audio`` is mono float32 PCM at ``SAMPLE_RATE``."""

    async def transcribe(self, audio: Any, options: TranscriptionOptions) -> Transcript: ...


# Everything a LoRA training run needs; JSON-able (the worker process reads it from the run directory). Defaults are
# the trainer's (docs/training.md); the jobs API maps Mistral's hyperparameters onto these fields.
@dataclass(frozen=True, slots=True)
class TrainingSpec:
    base_gguf: str  # the base model's GGUF (what the chat engine serves); converted once, cached in cache_dir
    training_files: tuple[str, ...]  # JSONL: {"messages": [...]} (loss on assistant tokens) or {"text": ...}
    run_dir: str  # progress.jsonl, checkpoints, the adapter; starting again on the same run_dir resumes
    cache_dir: str
    validation_files: tuple[str, ...] = ()
    training_steps: int | None = None  # None: epochs over the training lines
    epochs: float = 1.0
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    seq_len: int = 128
    batch_size: int = 4
    seed: int = 0
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    checkpoint_every: int = 10
    threads: int = 1  # torch threads of the worker process
    fim_ratio: float = 0.0  # share of {"text"} lines trained as fill-in-the-middle (needs fim_template)
    fim_template: str | None = None  # the base model's catalog fim_template


@dataclass(frozen=True, slots=True)
class TrainingHandle:
    run_dir: str
    pid: int


@dataclass(frozen=True, slots=True)
class TrainingEvent:
    """A line of progress: ``kind`` is step (train loss), checkpoint (plus validation metrics when validation lines
    exist) or one of the terminal kinds (succeeded, cancelled, failed)."""

    kind: str
    step: int = 0
    train_loss: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    message: str | None = None
    # classifier checkpoints: per target, e.g. {"sentiment": {"valid_accuracy": 0.9, "valid_macro_f1": 0.88}}
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TrainingProgress:
    """``state``: running, succeeded, cancelled, failed, or crashed (the worker died without a last word: start the
    spec again to resume from the last checkpoint)."""

    state: str
    total_steps: int | None
    events: tuple[TrainingEvent, ...]
    adapter: str | None = None  # the GGUF LoRA adapter, once succeeded


class TrainerEngine(Protocol):
    """Runs LoRA training off the request path; ``cancel`` asks the run to stop (honoured within seconds)."""

    def start(self, spec: TrainingSpec) -> TrainingHandle: ...

    def progress(self, handle: TrainingHandle) -> TrainingProgress: ...

    def cancel(self, handle: TrainingHandle) -> None: ...


# Classifier fine-tuning: a head trained over a sentence encoder's features (the moderation head's file format,
# engines/head_format.py), served by the "classifier" engine. Same handle/progress shapes as LoRA training, so the
# jobs API drives both the same way; ``TrainingProgress.adapter`` is the head file once succeeded.
@dataclass(frozen=True, slots=True)
class ClassifierTargetSpec:
    name: str
    labels: tuple[str, ...]
    multi_label: bool = False  # Mistral's loss_function multi_class: a line may carry several labels of the target
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ClassifierTrainingSpec:
    encoder: str  # the catalog id of the sentence encoder (embedding model) whose features the head reads
    training_files: tuple[str, ...]  # JSONL: {"text": ... | "messages": [...], "labels": {target: label | [labels]}}
    targets: tuple[ClassifierTargetSpec, ...]
    run_dir: str  # progress.jsonl, the head file; starting again on the same run_dir resumes or redoes the run
    validation_files: tuple[str, ...] = ()
    training_steps: int | None = None
    epochs: float | None = None
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    seq_len: int | None = None
    seed: int = 0


class ClassifierTrainerEngine(Protocol):
    """Trains a classifier head off the request path; ``progress`` events carry per-target validation metrics in
    ``TrainingEvent.metrics``."""

    def start(self, spec: ClassifierTrainingSpec) -> TrainingHandle: ...

    def progress(self, handle: TrainingHandle) -> TrainingProgress: ...

    def cancel(self, handle: TrainingHandle) -> None: ...


class EngineError(Exception):
    """An engine failed; services map it to a gateway error."""


class InvalidInput(EngineError):
    """The engine refused the request's input as malformed (e.g. an image it cannot decode): the caller's mistake."""


class EngineBusy(EngineError):
    """Every slot is busy and the wait queue is full."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineUnavailable(EngineError):
    """The engine cannot serve right now but will shortly (e.g. its worker process died and is being restarted)."""

    def __init__(self, message: str, *, retry_after: float = 2.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineTimeout(EngineUnavailable):
    """The engine did not answer in time (overloaded or stuck): retry later."""


class ContextOverflow(EngineError):
    """Prompt plus requested tokens do not fit in the model's context window."""

    def __init__(self, message: str, *, prompt_tokens: int | None = None, context_length: int | None = None) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
