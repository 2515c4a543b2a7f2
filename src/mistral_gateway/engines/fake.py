"""Deterministic fake engines for unit tests: same protocols, no weights, instant answers.

The text fake answers from a hash of (prompt, seed), honours ``max_tokens``, ``stop`` and ``min_tokens``, and
when a JSON schema is requested returns a minimal instance of it, so service logic is testable end to end.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    MODERATION_CATEGORIES,
    SAMPLE_RATE,
    ChatMessage,
    Classification,
    ClassifierTarget,
    ClassifierTrainingSpec,
    ContextOverflow,
    Delta,
    Embeddings,
    Generation,
    InvalidInput,
    OcrImage,
    OcrOptions,
    OcrPage,
    OcrTable,
    SamplingParams,
    Segment,
    TrainingEvent,
    TrainingHandle,
    TrainingProgress,
    TrainingSpec,
    Transcript,
    TranscriptionOptions,
    Word,
)

__all__ = ["FakeClassifierEngine", "FakeClassifierTrainer", "FakeEmbeddingEngine", "FakeOcrEngine", "FakeSpeechEngine",
           "FakeTextEngine", "FakeTrainer", "load_classifier", "load_embedding", "load_ocr", "load_speech", "load_text"]

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett")


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class FakeTextEngine:
    def __init__(self, context_length: int = 2048) -> None:
        self.context_length = context_length
        self.prompts: list[str] = []

    async def render(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None,
                     *, continue_last: bool = False) -> str:
        lines = [f"<{m.role}> {m.content}" for m in messages]
        if tools:
            lines.insert(0, "<tools> " + json.dumps([t.get("function", t).get("name") for t in tools]))
        return "\n".join(lines) + ("" if continue_last else "\n<assistant>")

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        pieces = [d async for d in self.stream(prompt, params)]
        last = pieces[-1]
        return Generation("".join(d.text for d in pieces), last.finish_reason or "stop", last.prompt_tokens or 0,
                          last.completion_tokens or 0)

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        self.prompts.append(prompt)
        prompt_tokens = _tokens(prompt)
        budget = params.max_tokens if params.max_tokens is not None else self.context_length - prompt_tokens
        if prompt_tokens + max(budget, 0) > self.context_length:
            raise ContextOverflow(f"prompt ({prompt_tokens} tokens) + max_tokens ({budget}) exceeds the context "
                                  f"window of {self.context_length}", prompt_tokens=prompt_tokens,
                                  context_length=self.context_length)
        if params.grammar is not None and "<tool_call>" in params.grammar:
            words = [_tool_call_output(params.grammar)]
        elif params.json_schema is not None:
            words = [json.dumps(_instance(params.json_schema))]
        elif "<tools>" in prompt and "please call" in prompt:
            words = ["<tool_call>", "{...}"]  # starts a call on its own (``auto``): the service must take over
        else:
            seed = hashlib.sha256(f"{prompt}|{params.seed}|{params.temperature}".encode()).digest()
            count = max(params.min_tokens, 3 + seed[0] % 6)
            words = [_WORDS[seed[i % len(seed)] % len(_WORDS)] for i in range(count)]
        text, reason, emitted = "", "stop", 0
        for i, word in enumerate(words):
            if emitted >= budget:
                reason = "length"
                break
            piece = word if i == 0 else " " + word
            candidate = text + piece
            hit = next((s for s in params.stop if s and s in candidate), None)
            if hit is not None:
                piece = candidate[: candidate.index(hit)][len(text):]
                if piece:
                    yield Delta(piece)
                    emitted += 1
                break
            text = candidate
            emitted += 1
            yield Delta(piece)
        yield Delta("", finish_reason=reason, prompt_tokens=prompt_tokens, completion_tokens=emitted)


def _tool_call_output(grammar: str) -> str:
    """Satisfy the tool-call grammar of ``services.tools.call_grammar``: call its first function, with a minimal
    instance of that function's argument schema."""
    head = schema = None
    for line in grammar.splitlines():
        if line.startswith("f0: "):
            head = json.loads(line[4:].rsplit(" a0 ", 1)[0])
        elif line.startswith("a0: %json "):
            schema = json.loads(line[len("a0: %json "):])
    assert head is not None and schema is not None, "not a tool-call grammar"
    return "<tool_call>\n" + head + json.dumps(_instance(schema)) + "}\n</tool_call>"


def _instance(schema: dict[str, Any]) -> Any:
    """A minimal value satisfying common JSON-schema shapes."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: _instance(props.get(k, {})) for k in schema.get("required", list(props))}
    if kind == "array":
        return [_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * int(schema.get("minLength", 1))


class FakeEmbeddingEngine:
    def __init__(self, dimensions: int = 8, max_tokens: int = 256) -> None:
        self.dimensions = dimensions
        self.max_tokens = max_tokens
        self.batches: list[int] = []

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.batches.append(len(texts))
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(self.dimensions)]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            vectors.append([v / norm for v in raw])
        return Embeddings(vectors=vectors, token_counts=[min(self.max_tokens, _tokens(t) + 2) for t in texts])


class FakeClassifierEngine:
    """Scores a label 0.9 when its name (underscores as spaces) is in the text, else 0.1 — single-label targets
    are then normalised to sum to 1. Deterministic, so service logic is testable without an encoder."""

    def __init__(self, targets: Sequence[ClassifierTarget], max_tokens: int = 256,
                 thresholds: dict[str, float] | None = None) -> None:
        self.targets = tuple(targets)
        self.max_tokens = max_tokens
        self.thresholds = dict(thresholds or {label: 0.5 for t in self.targets if t.multi_label for label in t.labels})
        self.calls: list[list[str]] = []

    async def classify(self, texts: Sequence[str]) -> list[Classification]:
        self.calls.append(list(texts))
        return [Classification(self._scores(text.lower()), _tokens(text)) for text in texts]

    def _scores(self, text: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for target in self.targets:
            raw = {label: 0.9 if label.replace("_", " ") in text else 0.1 for label in target.labels}
            if not target.multi_label:
                total = sum(raw.values())
                raw = {label: score / total for label, score in raw.items()}
            out[target.name] = raw
        return out


class FakeSpeechEngine:
    """"Hears" one word of ``_WORDS`` per second of audio whose mean absolute amplitude is above 0.01 (silence is
    skipped), in segments of ``words_per_segment`` words; the language is the requested one, else "en". Deterministic,
    so the transcription service, its streaming and the realtime session are testable without a model."""

    def __init__(self, words_per_segment: int = 3) -> None:
        self.words_per_segment = words_per_segment
        self.calls: list[tuple[int, TranscriptionOptions]] = []

    async def transcribe(self, audio: Any, options: TranscriptionOptions) -> Transcript:
        samples = list(audio)
        self.calls.append((len(samples), options))
        heard = [(second, _WORDS[second % len(_WORDS)]) for second in range(len(samples) // SAMPLE_RATE)
                 if _loud(samples[second * SAMPLE_RATE:(second + 1) * SAMPLE_RATE])]
        return Transcript(options.language or "en", len(samples) / SAMPLE_RATE, self._segments(heard, options))

    async def _segments(self, heard: list[tuple[int, str]], options: TranscriptionOptions) -> AsyncIterator[Segment]:
        for first in range(0, len(heard), self.words_per_segment):
            group = heard[first:first + self.words_per_segment]
            words = tuple(Word(float(s), s + 1.0, f" {w}") for s, w in group) if options.word_timestamps else ()
            yield Segment(float(group[0][0]), group[-1][0] + 1.0, " " + " ".join(w for _, w in group), words)


def _loud(samples: Sequence[float]) -> bool:
    return bool(samples) and sum(abs(x) for x in samples) / len(samples) > 0.01


class FakeOcrEngine:
    """Reads a document that is UTF-8 text: pages are separated by form feeds (``b"page1\\fpage2"`` is two pages
    whose markdown is ``page1`` and ``page2``, stripped). Each ``<img>`` in a page is an extracted 10x10-pixel image
    (numbered ``img-N.jpeg`` across the document, linked in the markdown as ``![img-N.jpeg](img-N.jpeg)``;
    ``image_limit``/``image_min_size``/``include_image_base64`` honoured); with ``table_format`` each line starting
    with ``|`` moves to one table of the page (``[tbl-N.md](tbl-N.md)`` in its place); ``extract_header``/
    ``extract_footer`` take the page's first/last line. Every page is 612x792 at 72 dpi. Bytes that are not UTF-8,
    an empty document, a page that does not exist or more pages than ``max_pages`` raise ``InvalidInput``, as the
    real engine does. Deterministic, so the OCR operation is testable without rapidocr."""

    WIDTH, HEIGHT, DPI, IMAGE = 612, 792, 72, 10

    def __init__(self) -> None:
        self.calls: list[tuple[int, OcrOptions]] = []

    async def read(self, document: bytes, options: OcrOptions) -> list[OcrPage]:
        self.calls.append((len(document), options))
        try:
            texts = document.decode("utf-8").split("\f")
        except UnicodeDecodeError:
            raise InvalidInput("the document is not a PDF or an image this engine can read") from None
        if not document.strip():
            raise InvalidInput("the document is empty")
        wanted = options.pages if options.pages is not None else tuple(range(len(texts)))
        missing = [p for p in wanted if not 0 <= p < len(texts)]
        if missing:
            raise InvalidInput(f"page {missing[0]} does not exist: the document has {len(texts)} page(s), "
                               f"numbered from 0")
        if len(wanted) > options.max_pages:
            raise InvalidInput(f"{len(wanted)} pages selected; at most {options.max_pages} are read per request")
        counter = [0]
        return [self._page(i, texts[i], options, counter) for i in wanted]

    def _page(self, index: int, text: str, options: OcrOptions, counter: list[int]) -> OcrPage:
        lines = text.strip().split("\n")
        header = lines.pop(0) if options.extract_header and lines else None
        footer = lines.pop() if options.extract_footer and lines else None
        tables: list[OcrTable] = []
        if options.table_format is not None and any(line.startswith("|") for line in lines):
            rows = [line for line in lines if line.startswith("|")]
            table_id = f"tbl-{index}.{'md' if options.table_format == 'markdown' else 'html'}"
            tables.append(OcrTable(table_id, "\n".join(rows), options.table_format))
            at = next(i for i, line in enumerate(lines) if line.startswith("|"))
            lines = [line for line in lines if not line.startswith("|")]
            lines.insert(at, f"[{table_id}]({table_id})")
        markdown, images = "\n".join(lines), []
        while "<img>" in markdown:
            keep = (options.image_min_size or 0) <= self.IMAGE and (
                options.image_limit is None or counter[0] < options.image_limit)
            link = ""
            if keep:
                name = f"img-{counter[0]}.jpeg"
                counter[0] += 1
                data = "data:image/jpeg;base64,/9j/" + name.encode().hex() if options.include_image_base64 else None
                images.append(OcrImage(name, 0, 0, self.IMAGE, self.IMAGE, data))
                link = f"![{name}]({name})"
            markdown = markdown.replace("<img>", link, 1)
        return OcrPage(index, markdown, tuple(images), self.WIDTH, self.HEIGHT, self.DPI, tuple(tables), header,
                       footer)


def load_classifier(entry: ModelEntry, _path: Path | None, _settings: Settings) -> FakeClassifierEngine:
    engine = FakeClassifierEngine([ClassifierTarget("moderation", MODERATION_CATEGORIES, multi_label=True)])
    engine.thresholds.update(entry.thresholds)  # as the real engine: configuration over the head's defaults
    return engine


def load_text(entry: ModelEntry, _path: Path | None, _settings: Settings) -> FakeTextEngine:
    return FakeTextEngine(context_length=entry.max_context_length)


def load_embedding(entry: ModelEntry, _path: Path | None, _settings: Settings) -> FakeEmbeddingEngine:
    return FakeEmbeddingEngine(max_tokens=entry.max_context_length)


def load_speech(entry: ModelEntry, _path: Path | None, _settings: Settings) -> FakeSpeechEngine:
    return FakeSpeechEngine()


def load_ocr(entry: ModelEntry, _path: Path | None, _settings: Settings) -> FakeOcrEngine:
    return FakeOcrEngine()


class _FakeRuns:
    """What both fake trainers share: runs keyed by run directory, one step per ``progress`` call (``_advance``), a
    restart resuming from the last checkpoint, ``cancel`` and ``crash()``. Success names ``<run_dir>/<RESULT>``."""

    RESULT = ""
    DEFAULT_STEPS = 10

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.started: list[Any] = []
        self._runs: dict[str, dict[str, Any]] = {}

    def start(self, spec: Any) -> TrainingHandle:
        self.started.append(spec)
        run = self._runs.get(spec.run_dir)
        resumed = 0 if run is None else run["checkpoint"]
        self._runs[spec.run_dir] = {"spec": spec, "step": resumed, "checkpoint": resumed, "state": "running",
                                    "events": [] if run is None else run["events"]}
        return TrainingHandle(run_dir=spec.run_dir, pid=len(self.started))

    def progress(self, handle: TrainingHandle) -> TrainingProgress:
        run = self._runs[handle.run_dir]
        spec = run["spec"]
        total = spec.training_steps or self.DEFAULT_STEPS
        if run["state"] == "running":
            self._advance(run, spec, total)
        result = f"{spec.run_dir}/{self.RESULT}" if run["state"] == "succeeded" else None
        return TrainingProgress(run["state"], total, tuple(run["events"]), result)

    def cancel(self, handle: TrainingHandle) -> None:
        run = self._runs[handle.run_dir]
        if run["state"] == "running":
            run["state"] = "cancelled"
            run["events"].append(TrainingEvent("cancelled", step=run["step"]))

    def crash(self, handle: TrainingHandle) -> None:
        self._runs[handle.run_dir]["state"] = "crashed"

    def _advance(self, run: dict[str, Any], spec: Any, total: int) -> None:
        raise NotImplementedError

    def _step(self, run: dict[str, Any], train_loss: float) -> int | None:
        """The next step: its number, or None when ``fail_at`` failed it."""
        step = run["step"] = run["step"] + 1
        if step == self.fail_at:
            run["state"] = "failed"
            run["events"].append(TrainingEvent("failed", step=step, message="fake failure"))
            return None
        run["events"].append(TrainingEvent("step", step=step, train_loss=train_loss / step))
        return step

    @staticmethod
    def _checkpoint(run: dict[str, Any], step: int, total: int, event: TrainingEvent) -> None:
        run["events"].append(event)
        run["checkpoint"] = step
        if step == total:
            run["state"] = "succeeded"
            run["events"].append(TrainingEvent("succeeded", step=step))


class FakeTrainer(_FakeRuns):
    """Trains in no time: each ``progress`` call advances a run by one step (train loss ``2 / step``, a checkpoint
    every ``checkpoint_every`` steps with valid loss ``2.5 / step`` and accuracy ``1 - 1 / (step + 1)`` when the spec
    has validation files) until it succeeds with ``<run_dir>/adapter.gguf``; ``cancel`` ends it as cancelled.
    ``fail_at`` makes every run fail at that step; ``crash()`` makes a run "crashed" (start the spec again to resume
    from its last checkpoint), so job handling is testable without torch."""

    RESULT = "adapter.gguf"

    def _advance(self, run: dict[str, Any], spec: TrainingSpec, total: int) -> None:
        step = self._step(run, 2.0)
        if step is not None and (step % spec.checkpoint_every == 0 or step == total):
            valid = {"valid_loss": 2.5 / step, "valid_mean_token_accuracy": 1 - 1 / (step + 1)}
            self._checkpoint(run, step, total, TrainingEvent("checkpoint", step=step, train_loss=2 / step,
                                                             **(valid if spec.validation_files else {})))


class FakeClassifierTrainer(_FakeRuns):
    """A classifier run in no time: each ``progress`` call advances one step (``training_steps`` or 4 in all);
    checkpoints every 2 steps carry per-target metrics (``valid_accuracy`` ``1 - 1 / (step + 1)``) when the spec has
    validation files; success names ``<run_dir>/head.bin`` (not written: the jobs API tests need no file). ``fail_at``
    and ``crash()`` as ``FakeTrainer``."""

    RESULT = "head.bin"
    DEFAULT_STEPS = 4

    def _advance(self, run: dict[str, Any], spec: ClassifierTrainingSpec, total: int) -> None:
        step = self._step(run, 1.0)
        if step is not None and (step % 2 == 0 or step == total):
            metrics = ({t.name: {"valid_accuracy": 1 - 1 / (step + 1)} for t in spec.targets}
                       if spec.validation_files else None)
            self._checkpoint(run, step, total, TrainingEvent("checkpoint", step=step, train_loss=1 / step,
                                                             metrics=metrics))
