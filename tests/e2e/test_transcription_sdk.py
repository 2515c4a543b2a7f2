"""Transcription and audio in chat through the official SDK (mistralai 3.7.0: ``client.audio.transcriptions.complete``
/ ``stream`` and their async twins, ``client.chat.complete`` with ``input_audio``) against a live server on loopback;
the SDK's own audio examples that need no microphone or internet, run with only ``server_url`` changed.

On the fake speech engine (fast): every input form, both shapes, errors, and streaming that follows the engine (the
first delta reaches the client before the engine has produced the second segment). On whisper-base (``slow``): speech
made by espeak-ng, in several formats, with its words found.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from mistralai.client.models import File

from audio_support import SPEECH_MODEL, tone_wav, with_fake_speech
from mistral_gateway.client import Client
from mistral_gateway.config import Settings, default_models
from mistral_gateway.engines.base import Segment, Transcript, TranscriptionOptions
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.services.transcription import TranscriptionService
from speech_material import ESPEAK_MISSING, encode, espeak, espeak_available, wer
from support import serving

pytestmark = pytest.mark.e2e

MIRROR = Path("/work/.mirror/mistralai+client-python/repo")
SENTENCE = "Please send the report to the finance team before Friday afternoon"


def fake_settings(data_dir: Path) -> Settings:
    models = with_fake_speech([m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()])
    return Settings(data_dir=data_dir, bootstrap_dev_token=False, models=models)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mistral, Any]]:
    with serving(fake_settings(tmp_path_factory.mktemp("transcribe-sdk") / "data")) as (server, services, token), \
            Mistral(api_key=token, server_url=server.base_url, timeout_ms=60_000) as client:
        yield client, services


def wav_file(pattern: list[bool]) -> File:
    return File(content=tone_wav(pattern), file_name="speech.wav", content_type="audio/wav")


def test_complete_with_an_upload(fake: tuple[Mistral, Any]) -> None:
    client, _ = fake
    res = client.audio.transcriptions.complete(model=SPEECH_MODEL, file=wav_file([True, True, False, True]),
                                               timestamp_granularities=["segment"], language="en")
    assert res.text == "alpha bravo delta" and res.language == "en" and res.model == SPEECH_MODEL
    assert res.segments is not None and [(s.start, s.end) for s in res.segments] == [(0.0, 4.0)]
    assert res.usage.prompt_audio_seconds == 4


def test_complete_with_a_file_id(fake: tuple[Mistral, Any]) -> None:
    """Without a file part the SDK sends a URL-encoded form."""
    client, _ = fake
    uploaded = client.files.upload(file=wav_file([True, True]), purpose="audio")
    res = client.audio.transcriptions.complete(model=SPEECH_MODEL, file_id=uploaded.id, context_bias=["Voxtral"])
    assert res.text == "alpha bravo"


def test_stream(fake: tuple[Mistral, Any]) -> None:
    client, _ = fake
    events = list(client.audio.transcriptions.stream(model=SPEECH_MODEL, file=wav_file([True] * 4),
                                                     timestamp_granularities=["word"]))
    names = [e.event for e in events]
    assert names[0] == "transcription.language" and names[-1] == "transcription.done"
    assert names.count("transcription.segment") == 4 and names.count("transcription.text.delta") == 2
    done = events[-1].data
    assert done.text == "alpha bravo charlie delta" and done.segments is not None and len(done.segments) == 4
    deltas = "".join(e.data.text for e in events if e.event == "transcription.text.delta")
    assert deltas == done.text


def test_async_twins(fake: tuple[Mistral, Any]) -> None:
    client, _ = fake

    async def run() -> tuple[str, list[str]]:
        res = await client.audio.transcriptions.complete_async(model=SPEECH_MODEL, file=wav_file([True]))
        stream = await client.audio.transcriptions.stream_async(model="voxtral-mini-2507", file=wav_file([True]))
        return res.text, [e.event async for e in stream]

    text, names = asyncio.run(run())
    assert text == "alpha" and names == ["transcription.language", "transcription.text.delta", "transcription.done"]


def test_errors_reach_the_sdk(fake: tuple[Mistral, Any]) -> None:
    client, _ = fake
    with pytest.raises(SDKError) as info:
        client.audio.transcriptions.complete(model=SPEECH_MODEL, file=wav_file([True]), diarize=True)
    assert info.value.status_code == 400 and "diarization" in info.value.body
    with pytest.raises(SDKError) as info:
        client.audio.transcriptions.stream(model="mistral-small-latest", file=wav_file([True]))
    assert info.value.status_code == 400 and "audio_transcription" in info.value.body
    with pytest.raises(SDKError) as info:
        client.audio.transcriptions.complete(model=SPEECH_MODEL, file=File(content=b"junk", file_name="x.mp3"))
    assert info.value.status_code == 400


def test_audio_in_chat(fake: tuple[Mistral, Any]) -> None:
    client, services = fake
    audio = base64.b64encode(tone_wav([True, True])).decode()
    res = client.chat.complete(model=SPEECH_MODEL, max_tokens=8, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Repeat it."}, {"type": "input_audio", "input_audio": audio}]}])
    assert res.model == SPEECH_MODEL and res.choices[0].message.content
    entry = services.models.catalog.resolve(services.settings.audio_chat_model)
    engine = asyncio.run(services.engines.text(entry))
    assert 'Audio transcript: "alpha bravo"' in engine.prompts[-1]


def test_the_projects_own_client(tmp_path: Path) -> None:
    """mistral_gateway.client (LowCodeAPI dialect): ``audio.transcribe`` and its twin ``audio.transcribe_stream``."""
    with serving(fake_settings(tmp_path / "data")) as (server, _services, token), \
            Client(server.base_url, token, cache_path=tmp_path / "formats.json") as client:
        res = client.audio.transcribe(model=SPEECH_MODEL, file=tone_wav([True, True]), filename="a.wav",
                                      timestamp_granularities=["segment"])
        assert res.text == "alpha bravo" and res.segments[0].end == 2.0
        events = list(client.audio.transcribe_stream(model=SPEECH_MODEL, file=tone_wav([True])))
        assert [e.type for e in events] == ["transcription.language", "transcription.text.delta",
                                            "transcription.done"]


class GatedEngine:
    """Yields one segment, then waits for ``release`` before producing the next: what reached the client before
    the release was sent while the engine had made only the first."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()
        self.produced = 0

    async def transcribe(self, audio: Any, options: TranscriptionOptions) -> Transcript:
        return Transcript("en", len(audio) / 16_000, self._segments())

    async def _segments(self) -> AsyncIterator[Segment]:
        try:
            self.produced = 1
            yield Segment(0.0, 1.0, " first")
            await asyncio.to_thread(self.release.wait, 60)
            self.produced = 2
            yield Segment(1.0, 2.0, " second")
        finally:
            self.closed.set()


def gated_server(settings: Settings, services: Any, gated: GatedEngine) -> None:
    """The live server's transcription service on ``gated``."""
    engines = EngineManager(settings, loaders={("fake", "speech"): lambda *_: gated})
    services.transcription = TranscriptionService(services.models.catalog, engines, services.files,
                                                  services.transcription.limits)


def test_a_stream_sends_each_segment_as_the_engine_produces_it(tmp_path: Path) -> None:
    gated = GatedEngine()
    settings = fake_settings(tmp_path / "data")
    with serving(settings) as (server, services, token):
        gated_server(settings, services, gated)
        with httpx.Client(base_url=server.base_url, timeout=60) as http, http.stream(
                "POST", "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {token}"},
                data={"model": SPEECH_MODEL, "stream": "true"},
                files={"file": ("a.wav", tone_wav([True, True]), "audio/wav")}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            seen = []
            for line in lines:
                seen.append(line)
                if line == "event: transcription.text.delta":
                    break
            assert next(lines) == 'data: {"type":"transcription.text.delta","text":"first"}'
            assert gated.produced == 1  # the first delta arrived while the second segment did not exist yet
            gated.release.set()
            rest = "\n".join(lines)
        assert gated.produced == 2 and '"text":" second"' in rest and "event: transcription.done" in rest
        assert seen[0] == "event: transcription.language"


def test_a_client_that_leaves_stops_the_decoding(tmp_path: Path) -> None:
    """Not streamed: the client gives up while the engine decodes; the engine's segments are closed at once."""
    gated = GatedEngine()
    settings = fake_settings(tmp_path / "data")
    with serving(settings) as (server, services, token):
        gated_server(settings, services, gated)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base_url}/v1/audio/transcriptions", headers={"Authorization": f"Bearer {token}"},
                       data={"model": SPEECH_MODEL}, files={"file": ("a.wav", tone_wav([True, True]), "audio/wav")},
                       timeout=httpx.Timeout(60, read=1))
        assert gated.closed.wait(30)  # closed, although its second segment was never released
        assert gated.produced == 1
        gated.release.set()


# -- the SDK's examples (examples/mistral/audio), with only the server URL changed --------------------------------

def example(name: str) -> str:
    if not MIRROR.exists():
        pytest.skip(f"the SDK mirror {MIRROR} is not here")
    return subprocess.run(["git", "--git-dir", str(MIRROR), "show", f"HEAD:examples/mistral/audio/{name}"],
                          check=True, capture_output=True, text=True).stdout


def run_example(name: str, workdir: Path, base_url: str, token: str) -> subprocess.CompletedProcess[str]:
    """The example as published but for one line: ``Mistral(api_key=...)`` gets ``server_url``."""
    source = example(name).replace("Mistral(api_key=api_key)", f"Mistral(api_key=api_key, server_url={base_url!r})")
    assert f"server_url={base_url!r}" in source, f"{name}: no client construction to point at the server"
    script = workdir / name
    script.write_text(source)
    env = {**os.environ, "MISTRAL_API_KEY": token}
    return subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def fixture_mp3(workdir: Path) -> Path:
    """The examples' ``examples/fixtures/bcn_weather.mp3`` (from the SDK mirror), where they open it."""
    target = workdir / "examples" / "fixtures" / "bcn_weather.mp3"
    target.parent.mkdir(parents=True, exist_ok=True)
    blob = "HEAD:examples/fixtures/bcn_weather.mp3"
    target.write_bytes(subprocess.run(["git", "--git-dir", str(MIRROR), "show", blob], check=True,
                                      capture_output=True).stdout)
    return target


# -- whisper-base (slow) -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[Mistral, Any, str, str]]:
    """The default catalog: whisper-base for the voxtral ids; the chat cascade answered by SmolLM2 (the smallest),
    its window cut to 512 tokens so that the SDK's chat example (no max_tokens) ends soon."""
    models = [m.model_copy(update={"max_context_length": 512}) if m.id == "smollm2-135m-instruct" else m
              for m in default_models()]
    settings = Settings(data_dir=tmp_path_factory.mktemp("transcribe-real") / "data", bootstrap_dev_token=False,
                        weights_path=weights_dir, audio_chat_model="ministral-3b-latest", models=models)
    with serving(settings) as (server, services, token), \
            Mistral(api_key=token, server_url=server.base_url, timeout_ms=300_000) as client:
        yield client, services, server.base_url, token


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if not espeak_available():
        pytest.skip(ESPEAK_MISSING)
    return espeak(SENTENCE, tmp_path_factory.mktemp("espeak") / "fox.wav")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_real_transcription(real: tuple[Mistral, Any, str, str], speech: bytes, fmt: str) -> None:
    client = real[0]
    data = speech if fmt == "wav" else encode(speech, fmt)
    res = client.audio.transcriptions.complete(model="voxtral-mini-latest", file=File(content=data,
                                               file_name=f"fox.{fmt}"), timestamp_granularities=["segment"])
    assert wer(SENTENCE, res.text) <= 0.2, res.text
    assert res.language == "en" and res.segments
    assert all(a.end <= b.start + 0.01 for a, b in zip(res.segments, res.segments[1:], strict=False))
    assert res.usage.prompt_audio_seconds is not None and res.usage.prompt_audio_seconds >= 3


@pytest.mark.slow
def test_real_stream_with_words(real: tuple[Mistral, Any, str, str], speech: bytes) -> None:
    events = list(real[0].audio.transcriptions.stream(
        model="voxtral-mini-2507", file=File(content=speech, file_name="fox.wav"), language="en",
        timestamp_granularities=["word"]))
    assert events[0].event == "transcription.language" and events[-1].event == "transcription.done"
    words = [e.data for e in events if e.event == "transcription.segment"]
    assert len(words) >= 8 and all(w.start <= w.end for w in words)
    assert wer(SENTENCE, events[-1].data.text) <= 0.2


@pytest.mark.slow
def test_real_audio_in_chat(real: tuple[Mistral, Any, str, str], speech: bytes) -> None:
    client = real[0]
    res = client.chat.complete(model="voxtral-small-latest", max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": base64.b64encode(speech).decode()},
        {"type": "text", "text": "Who gets the report?"}]}])
    assert res.model == "voxtral-small-latest" and res.choices[0].message.content is not None
    assert res.usage.prompt_tokens > 20  # the transcript reached the chat model's prompt


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transcription_async.py", "transcription_stream_async.py", "chat_base64.py",
                                  "chat_streaming.py"])
def test_sdk_examples(real: tuple[Mistral, Any, str, str], tmp_path: Path, name: str) -> None:
    """The published examples that need no microphone or internet: bcn_weather.mp3 (a weather report for
    Barcelona) transcribed, streamed, and asked about in chat (as base64, and as the signed URL of an upload)."""
    _, _, base_url, token = real
    fixture_mp3(tmp_path)
    done = run_example(name, tmp_path, base_url, token)
    assert done.returncode == 0, done.stderr
    out = done.stdout.lower()
    if name.startswith("transcription"):
        assert "barcelona" in out or "weather" in out, out
    if name == "transcription_stream_async.py":
        assert "transcription.done" in out and "transcription.text.delta" in out
    if name == "chat_base64.py":
        assert out.strip()
    if name == "chat_streaming.py":
        assert "uploaded audio file" in out and "deleted audio file" in out


@pytest.mark.slow
def test_sdk_diarize_example_is_refused_clearly(real: tuple[Mistral, Any, str, str], tmp_path: Path) -> None:
    _, _, base_url, token = real
    fixture = fixture_mp3(tmp_path)
    source = example("transcription_diarize_async.py").replace(
        'pathlib.Path(__file__).parents[2] / "fixtures"', f"pathlib.Path({str(fixture.parent)!r})")
    script = tmp_path / "diarize.py"
    script.write_text(source.replace("Mistral(api_key=api_key)", f"Mistral(api_key=api_key, server_url={base_url!r})"))
    done = subprocess.run([sys.executable, str(script)], env={**os.environ, "MISTRAL_API_KEY": token},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "no diarization model is installed" in done.stderr
