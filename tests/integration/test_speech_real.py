"""The shipped speech model (faster-whisper, Whisper base int8, loaded by the engine manager from the default catalog)
on speech synthesised by espeak-ng in the test: the words come back (low WER), English is detected, segments and
words have ordered timestamps, segments reach the reader while later ones are still decoding, and every upload
format transcribes. Each test costs one 30-second decoding window (Whisper's unit of work), no more."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mistral_gateway.config import Settings
from mistral_gateway.engines.audio import AudioTooLarge, decode_audio
from mistral_gateway.engines.base import SAMPLE_RATE, InvalidInput, Segment, TranscriptionOptions
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.engines.speech import WhisperSpeechEngine
from speech_material import ENCODINGS, ESPEAK_MISSING, encode, espeak, espeak_available, wer, words

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not espeak_available(), reason=ESPEAK_MISSING)]

SPEECH = ("Good morning everyone. Today we will talk about the weather in the north of the country. "
          "It will be cold and windy, with some rain in the afternoon. "
          "Please remember to bring a warm coat and an umbrella when you leave the house.")
# one sentence per upload format other than wav, each with a word the others lack
SENTENCES = {
    "mp3": "Please open the window and turn on the light.",
    "flac": "The train to London leaves at nine.",
    "ogg": "My sister plays the piano every evening.",
    "m4a": "We bought fresh bread at the market.",
    "webm": "The children are reading a book about dogs.",
}
LIMITS = {"max_seconds": 60.0, "max_bytes": 10_000_000}
MAX_WER = 0.15


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[WhisperSpeechEngine]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("speech"), weights_path=weights_dir,
                        bootstrap_dev_token=False)  # the default catalog
    manager = EngineManager(settings)
    entry = next(e for e in settings.models if "voxtral-mini-latest" in e.aliases)
    loaded = asyncio.run(manager.speech(entry))
    assert isinstance(loaded, WhisperSpeechEngine)
    yield loaded
    manager.close()


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return espeak(SPEECH, tmp_path_factory.mktemp("espeak") / "speech.wav")


def check_timestamps(segments: list[Segment], duration: float) -> None:
    assert segments
    for before, after in itertools.pairwise(segments):
        assert before.end <= after.start + 0.01  # ordered, not overlapping
    for segment in segments:
        assert 0 <= segment.start < segment.end <= duration + 0.5
        assert segment.words, "word timestamps were asked for"
        starts = [w.start for w in segment.words]
        assert starts == sorted(starts)
        assert all(segment.start - 0.01 <= w.start <= w.end <= segment.end + 0.01 for w in segment.words)
        assert "".join(w.text for w in segment.words).split() == segment.text.split()


def test_speech_is_transcribed_streamed_and_timed(engine: WhisperSpeechEngine, speech_wav: bytes) -> None:
    audio = decode_audio(speech_wav, **LIMITS)
    # the same loaded model behind a reader that takes one segment at a time: decoding cannot run ahead
    stepwise = WhisperSpeechEngine(engine.model, model_id="stepwise", lookahead=1)

    async def run() -> tuple[Any, list[Segment], int]:
        transcript = await stepwise.transcribe(audio, TranscriptionOptions(word_timestamps=True))
        first = await anext(transcript.segments)
        running = stepwise.active  # still decoding the rest when the first segment is in hand
        return transcript, [first, *[s async for s in transcript.segments]], running

    transcript, segments, running_after_first = asyncio.run(run())
    text = "".join(s.text for s in segments)
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(audio.size / SAMPLE_RATE, abs=0.01)
    assert wer(SPEECH, text) <= MAX_WER, text
    assert {"morning", "weather", "umbrella", "house"} <= set(words(text))
    check_timestamps(segments, transcript.duration)
    assert len(segments) >= 2 and running_after_first == 1
    assert stepwise.stats.segments == len(segments) and stepwise.active == 0


def test_every_upload_format_is_heard(engine: WhisperSpeechEngine, tmp_path: Path) -> None:
    """One sentence per format, each encoded, decoded and laid end to end with a second of silence between them:
    one decoding window tells whether any format lost its audio."""
    gap = np.zeros(SAMPLE_RATE, np.float32)
    clips = []
    for name, sentence in SENTENCES.items():
        encoded = encode(espeak(sentence, tmp_path / f"{name}.wav"), name)
        clips += [decode_audio(encoded, **LIMITS), gap]
    audio = np.concatenate(clips)
    assert audio.size < 30 * SAMPLE_RATE  # one window

    async def run() -> str:
        transcript = await engine.transcribe(audio, TranscriptionOptions(language="en"))
        assert transcript.language == "en"
        return "".join([s.text async for s in transcript.segments])

    text = asyncio.run(run())
    heard = set(words(text))
    assert {"window", "london", "piano", "bread", "children"} <= heard, text
    assert wer(" ".join(SENTENCES.values()), text) <= MAX_WER, text
    assert set(SENTENCES) | {"wav"} == set(ENCODINGS)


def test_bad_audio_is_refused_before_the_model(engine: WhisperSpeechEngine, speech_wav: bytes) -> None:
    with pytest.raises(AudioTooLarge, match="the limit is 3 seconds"):
        decode_audio(speech_wav, max_seconds=3, max_bytes=10_000_000)
    noise = np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    for corrupt in (noise, b"ID3\x04\x00\x00" + noise, b"OggS" + noise):
        with pytest.raises(InvalidInput):
            decode_audio(corrupt, **LIMITS)
    before = engine.stats.transcriptions
    with pytest.raises(InvalidInput, match="language 'zz'"):
        asyncio.run(engine.transcribe(np.zeros(SAMPLE_RATE, np.float32), TranscriptionOptions(language="zz")))
    assert engine.stats.transcriptions == before
