"""The realtime session without a transport: ``RealtimeService.serve`` over in-memory receive/send, with scripted
engines (hypotheses that revise their last words, a gate that holds a decoding, failures), and the pieces it is
made of: the local-agreement text (``realtime_text``) and the PCM decoding (``realtime_pcm``)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    SAMPLE_RATE,
    EngineBusy,
    EngineUnavailable,
    Segment,
    Transcript,
    TranscriptionOptions,
)
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.services.realtime import ClientGone, Outcome, RealtimeLimits, RealtimeService
from mistral_gateway.services.realtime_pcm import PcmStream
from mistral_gateway.services.realtime_text import Piece, WindowText

MODEL = "voxtral-mini-latest"


class ScriptedEngine:
    """Answers a decoding of ``n`` whole seconds of audio with ``script(n)``: (start, end, text) segments."""

    def __init__(self, script: Callable[[int], list[tuple[float, float, str]]]) -> None:
        self.script = script
        self.gate: asyncio.Event | None = None  # set: decodings wait for it
        self.fail: Exception | None = None
        self.lengths: list[int] = []
        self.prompts: list[str | None] = []

    async def transcribe(self, audio: Any, options: TranscriptionOptions) -> Transcript:
        if self.fail is not None:
            raise self.fail
        if self.gate is not None:
            await self.gate.wait()
        seconds = len(audio) // SAMPLE_RATE
        self.lengths.append(seconds)
        self.prompts.append(options.prompt)
        return Transcript(options.language or "en", len(audio) / SAMPLE_RATE, self._segments(seconds))

    async def _segments(self, seconds: int) -> AsyncIterator[Segment]:
        for start, end, text in self.script(seconds):
            yield Segment(start, end, text)


def service(engine: ScriptedEngine, tmp_path: Path, **limits: Any) -> RealtimeService:
    entry = ModelEntry(id="speech", engine="fake", aliases=[MODEL], capabilities=["audio_transcription"])
    settings = Settings(data_dir=tmp_path, models=[entry])
    engines = EngineManager(settings, loaders={("fake", "speech"): lambda *_: engine})
    return RealtimeService(ModelCatalog([entry]), engines, RealtimeLimits(**limits))


def audio_message(seconds: float) -> str:
    pcm = struct.pack(f"<{round(seconds * SAMPLE_RATE)}h", *([3000] * round(seconds * SAMPLE_RATE)))
    return json.dumps({"type": "input_audio.append", "audio": base64.b64encode(pcm).decode()})


async def serve(svc: RealtimeService, messages: list[str], on_receive: Callable[[int], None] | None = None,
                model: str = MODEL) -> tuple[Outcome, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    queue = list(messages)
    calls = 0

    async def receive() -> str | None:
        nonlocal calls
        calls += 1
        if on_receive is not None:
            on_receive(calls)
        return queue.pop(0) if queue else None

    async def send(event: dict[str, Any]) -> None:
        events.append(event)

    return await svc.serve(model, receive, send), events


def deltas(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "transcription.text.delta"]


def test_deltas_are_never_revised(tmp_path: Path) -> None:
    hypotheses = {1: "Hello", 2: "Hello word", 3: "Hello world, how", 4: "Hello world, how are you",
                  5: "Hello world, how are you today."}
    engine = ScriptedEngine(lambda n: [(0.0, n - 0.5, hypotheses[n])])
    end = json.dumps({"type": "input_audio.end"})
    outcome, events = asyncio.run(serve(service(engine, tmp_path), [audio_message(1.0)] * 5 + [end]))
    assert outcome.status == 200 and outcome.audio_seconds == 5.0
    # "word" was heard once, then "world": nothing is said until two decodings agree, so nothing is taken back
    assert deltas(events) == ["Hello", " world, how", " are you", " today."]
    done = events[-1]
    assert done["type"] == "transcription.done" and done["text"] == "Hello world, how are you today."
    assert done["segments"] == [{"type": "transcription_segment", "text": done["text"], "start": 0.0, "end": 4.5}]
    assert engine.lengths == [1, 2, 3, 4, 5, 5]  # one decoding per second of audio, and the last one on end


def test_finished_segments_leave_the_window(tmp_path: Path) -> None:
    """A segment ended a second before the window's end, every word said, is sent and never decoded again."""
    def script(n: int) -> list[tuple[float, float, str]]:
        return [(0.0, 1.0, "one"), (1.0, n - 0.2, "two" if n > 1 else "")][: 2 if n > 1 else 1]

    engine = ScriptedEngine(script)
    _, events = asyncio.run(serve(service(engine, tmp_path), [audio_message(1.0)] * 4
                                  + [json.dumps({"type": "input_audio.end"})]))
    segments = [(e["text"], e["start"], e["end"]) for e in events if e["type"] == "transcription.segment"]
    assert segments[0] == ("one", 0.0, 1.0)
    assert engine.lengths[:3] == [1, 2, 2]  # after "one" left at 2 s, the window starts at 1 s
    assert engine.prompts[:3] == [None, None, "one"]  # the text said before the window is the decoder's context
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(segments))  # in order, no overlap


def test_backpressure_while_the_engine_is_behind(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda n: [(0.0, float(n), "word")])
    svc = service(engine, tmp_path, window_seconds=5.0)
    limit = 5 + 10  # window plus catch-up seconds the reader may buffer while a decoding runs
    over: list[int] = []

    async def run() -> tuple[Outcome, list[dict[str, Any]]]:
        engine.gate = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, engine.gate.set)

        def on_receive(calls: int) -> None:
            if not engine.gate.is_set() and calls > limit + 2:  # read although the buffer is full
                over.append(calls)

        return await serve(svc, [audio_message(1.0)] * 40 + [json.dumps({"type": "input_audio.end"})], on_receive)

    outcome, events = asyncio.run(run())
    assert not over and outcome.status == 200 and events[-1]["type"] == "transcription.done"


@pytest.mark.parametrize(("failure", "status", "close"), [(EngineBusy("busy", retry_after=2.0), 503, 1011),
                                                          (EngineUnavailable("restarting"), 503, 1011),
                                                          (RuntimeError("a bug"), 500, 1011)])
def test_engine_failures_end_the_session(tmp_path: Path, failure: Exception, status: int, close: int) -> None:
    """A failed decoding ends the session; a busy engine only at the end (a partial decoding waits a step)."""
    engine = ScriptedEngine(lambda n: [])
    engine.fail = failure
    end = json.dumps({"type": "input_audio.end"})
    outcome, events = asyncio.run(serve(service(engine, tmp_path), [audio_message(1.0)] * 3 + [end]))
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == status
    assert (outcome.status, outcome.close_code) == (status, close)


def test_a_client_that_leaves(tmp_path: Path) -> None:
    outcome, events = asyncio.run(serve(service(ScriptedEngine(lambda n: []), tmp_path), [audio_message(1.0)]))
    assert (outcome.status, outcome.close_code, outcome.audio_seconds) == (499, None, 1.0)
    assert [e["type"] for e in events] == ["session.created"]


def test_agreement_ignores_case_and_punctuation() -> None:
    text = WindowText()
    assert text.agreed([Piece(0, 1, ("Hello", "world,"))]) == []
    assert text.agreed([Piece(0, 2, ("hello", "World.", "again"))]) == ["hello", "World."]
    assert text.rest([Piece(0, 2, ("hello", "World.", "again", "now"))]) == ["again", "now"]


def test_release() -> None:
    text = WindowText(said=["a", "b", "c"])
    pieces = [Piece(0.0, 1.0, ("a", "b")), Piece(1.0, 2.5, ("c", "d"))]
    partial = text.release(pieces, until=2.0, window=3.0)
    assert partial.segments == ((0.0, 1.0, "a b"),) and partial.cut == 1.0 and text.said == ["c"]
    final = WindowText(said=["x", "y", "z"]).release([Piece(0.0, 1.0, ("x",)), Piece(1.0, 2.0, ("y",))],
                                                      until=None, window=3.0)
    assert final.segments == ((0.0, 1.0, "x"), (1.0, 2.0, "y z")) and final.cut == 3.0  # the last takes the rest
    lost = WindowText(said=["q"]).release([], until=None, window=2.0)
    assert lost.segments == ((0.0, 2.0, "q"),)


def test_pcm_streams() -> None:
    rate = 48_000
    wave = (np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 20000).astype("<i2").tobytes()
    stream = PcmStream("pcm_s16le", rate)
    out = np.concatenate([*(stream.decode(wave[i:i + 4097]) for i in range(0, len(wave), 4097)), stream.end()])
    assert abs(len(out) - SAMPLE_RATE) <= 16  # odd splits, one sample's bytes across two chunks
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(20000 / 32768 / np.sqrt(2), rel=0.02)
    assert np.argmax(np.abs(np.fft.rfft(out[:SAMPLE_RATE // 2]))) == 220  # 440 Hz in bins of 2 Hz
    mulaw = PcmStream("pcm_mulaw", 8000)
    tone = np.where(np.sin(2 * np.pi * 200 * np.arange(8000) / 8000) > 0, 0x80, 0x00).astype(np.uint8).tobytes()
    assert abs(len(np.concatenate([mulaw.decode(tone), mulaw.end()])) - SAMPLE_RATE) <= 16  # resampled too
    floats = PcmStream("pcm_f32le", SAMPLE_RATE).decode(np.array([np.nan, 5.0, -np.inf, 0.25], "<f4").tobytes())
    assert floats.tolist() == [0.0, 1.0, -1.0, 0.25]  # caller-controlled floats are bounded
    assert PcmStream("pcm_mulaw", SAMPLE_RATE).decode(bytes([0x00, 0x80, 0xFF])).tolist() == pytest.approx(
        [-32124 / 32768, 32124 / 32768, 0.0])
    assert PcmStream("pcm_alaw", SAMPLE_RATE).decode(bytes([0x2A, 0xAA, 0xD5])).tolist() == pytest.approx(
        [-32256 / 32768, 32256 / 32768, 8 / 32768])


def test_a_client_gone_while_events_are_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The transport's ``send`` raises ClientGone: the session ends as 499, quietly (no error logged)."""
    svc = service(ScriptedEngine(lambda n: [(0.0, float(n), "word " * n)]), tmp_path)
    queue = [audio_message(1.0)] * 4
    sent: list[str] = []

    async def receive() -> str | None:
        return queue.pop(0) if queue else None

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "transcription.text.delta":
            raise ClientGone("connection reset")
        sent.append(event["type"])

    outcome = asyncio.run(svc.serve(MODEL, receive, send))
    assert (outcome.status, outcome.close_code) == (499, None) and "transcription.language" in sent
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_busy_engine_skips_partial_decodings(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda n: [(0.0, float(n), "word " * n)])
    busy = iter([True, True, False, False, False])

    async def transcribe(audio: Any, options: TranscriptionOptions) -> Transcript:
        if next(busy, False):
            raise EngineBusy("queue full", retry_after=1.0)
        return await ScriptedEngine.transcribe(engine, audio, options)

    engine.transcribe = transcribe  # type: ignore[method-assign]
    end = json.dumps({"type": "input_audio.end"})
    outcome, events = asyncio.run(serve(service(engine, tmp_path), [audio_message(1.0)] * 4 + [end]))
    assert outcome.status == 200 and events[-1]["text"] == "word word word word"
    assert engine.lengths == [3, 4, 4]  # the first two decodings were refused; the session went on


def test_errors_echo_only_a_prefix_of_what_the_client_wrote(tmp_path: Path) -> None:
    long = "x" * 100_000
    bad = [json.dumps({"type": long}), json.dumps({"type": "input_audio.flush", long: 1}),
           json.dumps({"type": "session.update", "session": {"language": long}})]
    _, events = asyncio.run(serve(service(ScriptedEngine(lambda n: []), tmp_path), bad))
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert len(errors) == 3 and all(e["code"] == 400 and len(e["message"]) < 500 for e in errors), errors


def test_the_prompt_holds_context_bias_and_the_end_of_the_text_said(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda n: [(0.0, 1.0, "word"), (1.0, n - 0.1, "more")][: 1 if n < 2 else 2])
    bias = json.dumps({"type": "session.update", "session": {"context_bias": ["Mistral", "Voxtral"]}})
    _, events = asyncio.run(serve(service(engine, tmp_path), [bias] + [audio_message(1.0)] * 80))
    assert engine.prompts[0] == "Mistral, Voxtral"
    last = engine.prompts[-1]
    assert last is not None and last.startswith("Mistral, Voxtral ")
    tail = last.removeprefix("Mistral, Voxtral ")
    said = "".join(deltas(events))
    assert 150 < len(tail) <= 200 and tail in said and tail.split()[0] in ("word", "more")  # whole words
