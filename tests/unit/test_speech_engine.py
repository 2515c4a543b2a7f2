"""WhisperSpeechEngine over a scripted stand-in for faster-whisper's WhisperModel: segments reach the reader while
later ones are still being decoded, closing stops the decoding, concurrency is bounded (queue, then EngineBusy),
model failures are EngineUnavailable, bad input InvalidInput; options reach the model; the catalog wiring."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.base import (
    SAMPLE_RATE,
    EngineBusy,
    EngineUnavailable,
    InvalidInput,
    Segment,
    TranscriptionOptions,
    Word,
)
from mistral_gateway.engines.fake import FakeSpeechEngine
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.engines.speech import WhisperSpeechEngine, _temperatures
from mistral_gateway.services.models import ModelCatalog

AUDIO = np.zeros(SAMPLE_RATE, np.float32)
PLAIN = TranscriptionOptions()
BOUND = 30.0  # seconds any wait in these tests may take before it counts as a hang


class ScriptedWhisper:
    """faster-whisper's interface: ``transcribe`` returns (a lazy segment generator, info). Each segment waits for
    its gate when ``gated``; ``pulled`` counts segments the generator produced."""

    supported_languages = ("en", "fr", "de")

    def __init__(self, segments: int = 5, *, gated: bool = False, fail_at: int | None = None,
                 fail_on_start: bool = False) -> None:
        self.count = segments
        self.gates = [threading.Event() for _ in range(segments)]
        if not gated:
            for gate in self.gates:
                gate.set()
        self.fail_at = fail_at
        self.fail_on_start = fail_on_start
        self.started = threading.Event()  # some call entered transcribe
        self.release = threading.Event()  # transcribe returns only once set (when ``hold``)
        self.hold = False
        self.calls: list[dict[str, Any]] = []
        self.pulled = 0
        self.closed = 0
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, **options: Any) -> tuple[Iterator[Any], Any]:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.calls.append({"samples": audio.size, "thread": threading.get_ident(), **options})
        self.started.set()
        if self.hold:
            assert self.release.wait(BOUND)
        if self.fail_on_start:
            self._done()
            raise RuntimeError("CUDA out of memory (scripted)")
        info = SimpleNamespace(language=options["language"] or "fr", duration=audio.size / SAMPLE_RATE)
        return self._segments(options["word_timestamps"]), info

    def _segments(self, words: bool) -> Iterator[Any]:
        try:
            for i in range(self.count):
                assert self.gates[i].wait(BOUND)
                if i == self.fail_at:
                    raise RuntimeError("decoder failed (scripted)")
                self.pulled += 1
                word = [SimpleNamespace(start=np.float64(i), end=np.float64(i + 0.5), word=f" w{i}")] if words else None
                yield SimpleNamespace(start=np.float64(i), end=np.float64(i + 1), text=f" segment {i}", words=word)
        finally:
            self.closed += 1
            self._done()

    def _done(self) -> None:
        with self._lock:
            self.running -= 1


async def until(condition: Any) -> None:
    """Wait (bounded) for a condition another thread brings about; no timing is asserted."""
    for _ in range(int(BOUND / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def collect(engine: WhisperSpeechEngine, options: TranscriptionOptions = PLAIN) -> tuple[Any, list[Segment]]:
    transcript = await engine.transcribe(AUDIO, options)
    return transcript, [s async for s in transcript.segments]


def test_transcript_has_language_duration_and_ordered_segments() -> None:
    model = ScriptedWhisper(3)
    engine = WhisperSpeechEngine(model)
    transcript, segments = asyncio.run(collect(engine, TranscriptionOptions(word_timestamps=True)))
    assert (transcript.language, transcript.duration) == ("fr", 1.0)
    assert [s.text for s in segments] == [" segment 0", " segment 1", " segment 2"]
    assert [s.start for s in segments] == [0.0, 1.0, 2.0] and all(type(s.start) is float for s in segments)
    assert segments[1].words == (Word(1.0, 1.5, " w1"),)
    assert engine.stats.segments == 3 and model.closed == 1
    assert engine.active == 0


def test_options_reach_the_model() -> None:
    model = ScriptedWhisper(1)
    asyncio.run(collect(WhisperSpeechEngine(model), TranscriptionOptions(language="de", temperature=0.5,
                                                                         word_timestamps=True, prompt="Kubernetes")))
    call = model.calls[0]
    assert (call["language"], call["word_timestamps"], call["initial_prompt"]) == ("de", True, "Kubernetes")
    assert call["temperature"] == (0.5, 0.7, 0.9)
    assert call["samples"] == SAMPLE_RATE
    asyncio.run(collect(WhisperSpeechEngine(model), PLAIN))
    assert (model.calls[1]["language"], model.calls[1]["initial_prompt"]) == (None, None)


def test_the_voice_activity_filter_is_asked_for_only_when_configured() -> None:
    model = ScriptedWhisper(1)
    asyncio.run(collect(WhisperSpeechEngine(model, vad=True), PLAIN))
    asyncio.run(collect(WhisperSpeechEngine(model), PLAIN))
    assert [call.get("vad_filter") for call in model.calls] == [True, None]


def test_temperature_fallbacks() -> None:
    assert _temperatures(0.0) == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert _temperatures(0.9) == (0.9,)
    assert _temperatures(1.5) == (1.5,)


def test_segments_arrive_while_later_ones_are_still_decoding() -> None:
    """The first segment is read while the model has not produced the second: streamed, not collected."""
    model = ScriptedWhisper(3, gated=True)
    engine = WhisperSpeechEngine(model)

    async def run() -> None:
        model.gates[0].set()
        transcript = await engine.transcribe(AUDIO, PLAIN)
        first = await anext(transcript.segments)
        assert first.text == " segment 0" and model.pulled == 1 and engine.active == 1
        for gate in model.gates[1:]:
            gate.set()
        rest = [s.text async for s in transcript.segments]
        assert rest == [" segment 1", " segment 2"]

    asyncio.run(run())


def test_closing_the_segments_stops_the_decoding() -> None:
    model = ScriptedWhisper(50)
    engine = WhisperSpeechEngine(model, lookahead=2)

    async def run() -> None:
        transcript = await engine.transcribe(AUDIO, PLAIN)
        await anext(transcript.segments)
        await transcript.segments.aclose()  # type: ignore[attr-defined]
        await until(lambda: engine.active == 0)

    asyncio.run(run())
    assert model.pulled <= 1 + 2 + 1  # the one read, the lookahead, the one being decoded when it stopped
    assert model.closed == 1 and engine.stats.stopped == 1


def test_an_abandoned_transcript_stops_and_frees_its_slot() -> None:
    model = ScriptedWhisper(50)
    engine = WhisperSpeechEngine(model, parallel=1, queue_limit=0, lookahead=1)

    async def run() -> None:
        transcript = await engine.transcribe(AUDIO, PLAIN)
        del transcript  # never read, never closed
        await until(lambda: engine.active == 0)
        _, segments = await collect(engine)  # the slot is free again
        assert len(segments) == 50

    asyncio.run(run())
    assert engine.stats.stopped == 1


def test_transcriptions_reuse_the_engines_threads() -> None:
    """Regression: a new thread per transcription made CTranslate2 abort the process at exit ("terminate called
    without an active exception") after a few transcriptions; the engine's ``parallel`` threads do all the work."""
    model = ScriptedWhisper(1)
    engine = WhisperSpeechEngine(model, parallel=1)

    async def run() -> None:
        for _ in range(6):
            await collect(engine)

    asyncio.run(run())
    assert len(model.calls) == 6 and len({call["thread"] for call in model.calls}) == 1
    assert threading.get_ident() not in {call["thread"] for call in model.calls}  # never the event loop's


def test_concurrency_is_bounded_then_queued_then_refused() -> None:
    model = ScriptedWhisper(2)
    model.hold = True
    engine = WhisperSpeechEngine(model, parallel=1, queue_limit=1)

    async def run() -> None:
        first = asyncio.create_task(collect(engine))
        second = asyncio.create_task(collect(engine))
        await until(lambda: model.started.is_set() and engine.active == 2)
        with pytest.raises(EngineBusy, match="retry shortly") as busy:
            await engine.transcribe(AUDIO, PLAIN)
        assert busy.value.retry_after > 0
        assert len(model.calls) == 1  # the second waits for the slot
        model.release.set()
        results = await asyncio.gather(first, second)
        assert [len(segments) for _, segments in results] == [2, 2]

    asyncio.run(run())
    assert model.most_running == 1 and engine.active == 0


def test_a_cancelled_caller_frees_its_place_in_the_queue() -> None:
    model = ScriptedWhisper(2)
    model.hold = True
    engine = WhisperSpeechEngine(model, parallel=1, queue_limit=1)

    async def run() -> None:
        first = asyncio.create_task(collect(engine))
        await until(model.started.is_set)
        queued = asyncio.create_task(engine.transcribe(AUDIO, PLAIN))
        await until(lambda: engine.active == 2)
        queued.cancel()
        await asyncio.wait([queued])  # its cancellation has run
        model.release.set()
        await first
        await until(lambda: engine.active == 0)

    asyncio.run(run())
    assert len(model.calls) == 1  # the cancelled one never decoded


def test_model_failures_are_engine_unavailable() -> None:
    engine = WhisperSpeechEngine(ScriptedWhisper(fail_on_start=True))
    with pytest.raises(EngineUnavailable, match="failed to transcribe") as err:
        asyncio.run(collect(engine))
    assert err.value.retry_after > 0 and engine.active == 0

    model = ScriptedWhisper(4, fail_at=2)
    engine = WhisperSpeechEngine(model)

    async def run() -> list[str]:
        transcript = await engine.transcribe(AUDIO, PLAIN)
        got = []
        with pytest.raises(EngineUnavailable):
            async for segment in transcript.segments:
                got.append(segment.text)
        return got

    assert asyncio.run(run()) == [" segment 0", " segment 1"]  # what was decoded before the failure still arrives
    assert engine.active == 0


@pytest.mark.parametrize(("audio", "options", "message"), [
    (np.zeros((2, 100), np.float32), PLAIN, "mono"),
    (np.zeros(0, np.float32), PLAIN, "at least one"),
    (np.array([0.0, np.nan], np.float32), PLAIN, "finite"),
    ("not audio", PLAIN, "sequence of float"),
    (AUDIO, TranscriptionOptions(language="xx"), "language 'xx'"),
])
def test_bad_input_is_invalid_input(audio: Any, options: TranscriptionOptions, message: str) -> None:
    model = ScriptedWhisper(1)
    with pytest.raises(InvalidInput, match=message):
        asyncio.run(WhisperSpeechEngine(model).transcribe(audio, options))
    assert model.calls == []


def test_close_tells_queued_callers_instead_of_leaving_them_waiting() -> None:
    model = ScriptedWhisper(2)
    model.hold = True
    engine = WhisperSpeechEngine(model, parallel=1, queue_limit=1)

    async def run() -> None:
        first = asyncio.create_task(engine.transcribe(AUDIO, PLAIN))
        await until(model.started.is_set)
        queued = asyncio.create_task(engine.transcribe(AUDIO, PLAIN))
        await until(lambda: engine.active == 2)
        engine.close()
        model.release.set()
        with pytest.raises(EngineUnavailable, match="stopped before"):
            await queued
        transcript = await first  # it had started: it ends at its next segment
        assert [s async for s in transcript.segments] == []
        await until(lambda: engine.active == 0)

    asyncio.run(run())
    assert len(model.calls) == 1


def test_close_stops_decodings_and_refuses_new_ones() -> None:
    model = ScriptedWhisper(50)
    engine = WhisperSpeechEngine(model, lookahead=1)

    async def run() -> None:
        transcript = await engine.transcribe(AUDIO, PLAIN)
        await anext(transcript.segments)
        engine.close()
        await until(lambda: engine.active == 0)
        with pytest.raises(EngineUnavailable, match="shutting down"):
            await engine.transcribe(AUDIO, PLAIN)

    asyncio.run(run())
    assert model.pulled < 50


def test_the_catalog_serves_voxtral_ids_with_the_speech_engine(tmp_path: Any) -> None:
    catalog = ModelCatalog(default_models())
    for name in ("voxtral-mini-latest", "voxtral-mini-2507", "voxtral-mini-2602", "voxtral-small-latest",
                 "voxtral-mini-transcribe-2507"):
        entry = catalog.resolve(name)
        assert entry is not None and entry.id == "whisper-base" and kind_of(entry) == "speech"
    card = catalog.card("voxtral-mini-latest")
    assert card is not None and card.capabilities.audio_transcription and card.capabilities.audio
    assert card.capabilities.completion_chat  # chat on a speech model is a cascade (services/chat_audio.py)
    fake = ModelEntry(id="f", engine="fake", capabilities=["audio_transcription"])
    assert kind_of(fake) == "speech"
    manager = EngineManager(Settings(data_dir=tmp_path, models=[fake], bootstrap_dev_token=False))
    engine = asyncio.run(manager.speech(fake))
    assert isinstance(engine, FakeSpeechEngine) and manager.loaded() == ["f"]
