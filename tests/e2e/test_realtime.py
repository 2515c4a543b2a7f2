"""Realtime transcription over a real WebSocket on loopback (uvicorn, the ``websockets`` client) with the fake speech
engine: the session's events and their order, partial text before the audio ends, bad messages, limits, both
dialects, refused handshakes, usage, and no token in the server's handshake log lines."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mistral_gateway.config import Settings
from mistral_gateway.engines.fake import _WORDS
from mistral_gateway.services.container import Services
from mistral_gateway.storage.records import UsageRecord
from realtime_support import REALTIME_MODEL, Client, append, fake_speech_models, silence, tone, words_of
from support import LiveServer, serving

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench"


def recorded(services: Services, count: int) -> list[UsageRecord]:
    """The usage rows once there are ``count``: a session's row is queued when its server side ends, which may be
    just after the client saw its last event."""
    for _ in range(600):
        records, _ = services.usage.list()
        if len(records) >= count:
            return records
        time.sleep(0.05)
    raise AssertionError(f"{count} usage rows were expected; there are {len(services.usage.list()[0])}")


@contextmanager
def uvicorn_log() -> Iterator[list[str]]:
    """The lines logged on ``uvicorn.error`` meanwhile, at INFO (uvicorn's loggers do not propagate to caplog's)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _settings(path: Path, **limits: object) -> Settings:
    return Settings(data_dir=path / "data", bootstrap_dev_token=False, models=fake_speech_models(), **limits)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    with serving(_settings(tmp_path_factory.mktemp("realtime"))) as (server, _services, token):
        yield server, token


def test_partial_text_arrives_while_audio_is_still_sent(live: tuple[LiveServer, str]) -> None:
    server, token = live

    async def session() -> Client:
        async with Client.open(server.base_url, token) as c:
            created = await c.next()
            assert created["type"] == "session.created"
            assert created["session"]["model"] == REALTIME_MODEL
            assert created["session"]["audio_format"] == {"encoding": "pcm_s16le", "sample_rate": 16000}
            for _ in range(3):
                await c.send(append(tone(1.0)))
            first = await c.until("transcription.text.delta")  # no flush, no end: the audio is not over
            assert first["text"].split()[0] == _WORDS[0]
            for chunk in (tone(1.0), silence(1.0), tone(1.0), tone(1.0)):
                await c.send(append(chunk))
            await c.send({"type": "input_audio.flush"})
            await c.send({"type": "input_audio.end"})
            await c.until("transcription.done")
            return c

    c = asyncio.run(session())
    kinds = [e["type"] for e in c.events]
    assert kinds[0] == "session.created" and kinds[-1] == "transcription.done"
    assert kinds.index("transcription.language") < kinds.index("transcription.text.delta")
    done = c.events[-1]
    deltas = "".join(e["text"] for e in c.events if e["type"] == "transcription.text.delta")
    assert done["text"] == deltas
    assert len(done["text"].split()) == 6 and set(done["text"].split()) <= set(_WORDS)  # six loud seconds
    assert done["language"] == "en" and done["model"] == REALTIME_MODEL
    assert done["usage"]["prompt_audio_seconds"] == 7
    segments = [e for e in c.events if e["type"] == "transcription.segment"]
    assert [s["text"] for s in segments] == [s["text"] for s in done["segments"]]
    assert " ".join(s["text"] for s in segments) == done["text"]
    ends = [(s["start"], s["end"]) for s in segments]
    assert all(0 <= a < b <= 7.0 for a, b in ends) and ends == sorted(ends)
    said = 0  # a segment's words were all sent as deltas before the segment event
    for event in c.events:
        if event["type"] == "transcription.text.delta":
            said += len(event["text"].split())
        elif event["type"] == "transcription.segment":
            before = c.events[:c.events.index(event) + 1]
            assert len(words_of(before, "transcription.segment")) <= said


def test_bad_messages_get_error_events_and_the_session_goes_on(live: tuple[LiveServer, str]) -> None:
    server, token = live
    bad: list[str | bytes] = [
        "not json", b"\x00\x01", json.dumps([1, 2]), json.dumps({"type": "nope"}), json.dumps({"audio": "AAAA"}),
        json.dumps({"type": "input_audio.append", "audio": "***"}),
        json.dumps({"type": "input_audio.append", "audio": "AAAA", "extra": 1}),
        json.dumps({"type": "input_audio.append", "audio": "A" * 400_000}),  # over 262144 bytes decoded
        json.dumps({"type": "session.update", "session": {"diarize": True}}),
        json.dumps({"type": "session.update", "session": {"turn_detection": {"start_threshold": 0.8}}}),
        json.dumps({"type": "session.update", "session": {"audio_format": {"encoding": "pcm_s16le",
                                                                           "sample_rate": 7000}}}),
        json.dumps({"type": "session.update", "session": {"audio_format": {"encoding": "mp3", "sample_rate": 8000}}}),
        json.dumps({"type": "session.update", "session": {"language": "english"}}),
    ]

    async def session() -> Client:
        async with Client.open(server.base_url, token) as c:
            await c.next()
            for message in bad:
                await c.send(message)
                error = await c.next()
                assert error["type"] == "error" and error["error"]["code"] == 400, (message[:60], error)
                assert isinstance(error["error"]["message"], str) and error["error"]["message"]
            await c.send({"type": "session.update", "session": {
                "audio_format": {"encoding": "pcm_s16le", "sample_rate": 8000}, "language": "fr",
                "context_bias": ["Mistral", "Voxtral"], "target_streaming_delay_ms": 100, "diarize": False}})
            updated = await c.next()
            assert updated["type"] == "session.updated"
            assert updated["session"]["audio_format"]["sample_rate"] == 8000
            assert updated["session"]["language"] == "fr" and updated["session"]["context_bias"] == ["Mistral",
                                                                                                     "Voxtral"]
            assert updated["session"]["target_streaming_delay_ms"] == 500  # the configured floor
            await c.send(append(tone(1.0, rate=8000)[:-1]))  # a sample split across two messages
            await c.send(append(tone(1.0, rate=8000)[-1:] + tone(1.0, rate=8000) + silence(0.5, rate=8000)))
            await c.send({"type": "session.update", "session": {"language": "en"}})
            locked = await c.until("error")
            assert locked["error"]["code"] == 400 and "before audio starts" in locked["error"]["message"]
            await c.send({"type": "input_audio.end"})
            await c.until("transcription.done")
            return c

    c = asyncio.run(session())
    done = c.events[-1]
    assert done["language"] == "fr" and len(done["text"].split()) == 2
    assert done["usage"]["prompt_audio_seconds"] == 3  # 2.5 s, rounded up


def test_models_the_session_refuses(live: tuple[LiveServer, str]) -> None:
    server, token = live

    async def first_event(model: str | None) -> tuple[dict[str, object], int | None]:
        async with Client.open(server.base_url, token, model) as c:
            event = await c.next()
            with pytest.raises(ConnectionClosed) as closed:
                await c.next()
            return event, closed.value.rcvd.code if closed.value.rcvd else None

    for model, code in (("no-such-model", 404), ("mistral-small-latest", 400), (None, 400),
                        ("voxtral-tts-latest", 400)):
        event, close = asyncio.run(first_event(model))
        assert event["type"] == "error" and event["error"]["code"] == code, (model, event)
        assert close == 1008


def test_handshakes_refused_in_each_dialect(tmp_path: Path) -> None:
    with serving(_settings(tmp_path)) as (server, services, token), uvicorn_log() as log:
        narrow, _ = services.tokens.create("chat only", scopes=["chat"])

        async def status(token: str | None, lowcode: bool = False) -> tuple[int, dict[str, object]]:
            with pytest.raises(InvalidStatus) as refused:
                async with Client.open(server.base_url, token, lowcode=lowcode):
                    pass
            response = refused.value.response
            assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])  # refused handshakes too
            return response.status_code, json.loads(response.body or b"{}")

        async def lowcode_works() -> str:
            async with Client.open(server.base_url, token, lowcode=True,
                                   additional_headers={"X-Request-ID": "rt-7"}) as c:
                assert c.ws.response is not None and c.ws.response.headers["x-request-id"] == "rt-7"  # echoed
                return (await c.next())["type"]

        code, body = asyncio.run(status(None))
        assert code == 401 and body["object"] == "error" and "Authorization" in str(body["message"])
        assert asyncio.run(status("at_" + "x" * 43))[0] == 401
        code, body = asyncio.run(status(narrow))
        assert code == 403 and "audio" in str(body["message"])
        code, body = asyncio.run(status(None, lowcode=True))
        assert code == 401 and "api_token" in body["data"]["error"]["message"]  # type: ignore[index]
        assert asyncio.run(lowcode_works()) == "session.created"
        rows = {(r.operation, r.dialect, r.status) for r in recorded(services, 2)}
        assert rows == {("realtime_transcription", "native", 403), ("realtime_transcription", "lowcode", 499)}
    # uvicorn logs an error after every refused handshake, though its response went out: not ours to repeat
    assert not [line for line in log if "without completing handshake" in line]


def test_usage_records_the_audio_seconds(tmp_path: Path) -> None:
    with serving(_settings(tmp_path)) as (server, services, token):
        async def session() -> None:
            async with Client.open(server.base_url, token) as c:
                await c.next()
                await c.send(append(tone(2.5)))
                await c.send({"type": "input_audio.end"})
                await c.until("transcription.done")

        asyncio.run(session())
        assert [(r.operation, r.model, r.prompt_tokens, r.status) for r in recorded(services, 1)] == [
            ("realtime_transcription", REALTIME_MODEL, 3, 200)]


def test_session_limits(tmp_path: Path) -> None:
    settings = _settings(tmp_path, realtime_max_sessions=1, realtime_max_audio_seconds=3.0,
                         realtime_max_message_bytes=512 * 1024)
    with serving(settings) as (server, _services, token):
        async def too_many() -> dict[str, object]:
            async with Client.open(server.base_url, token) as first:
                await first.next()
                async with Client.open(server.base_url, token) as second:
                    refused = await second.next()
                    with pytest.raises(ConnectionClosed) as closed:
                        await second.next()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
                await first.send({"type": "input_audio.end"})
                await first.until("transcription.done")  # the first session was not disturbed
            return refused

        refused = asyncio.run(too_many())
        assert refused["type"] == "error" and refused["error"]["code"] == 503  # type: ignore[index]

        async def too_long() -> dict[str, object]:
            async with Client.open(server.base_url, token) as c:
                await c.next()
                await c.send(append(tone(2.0)))
                await c.send(append(tone(2.0)))
                error = await c.until("error")
                with pytest.raises(ConnectionClosed):
                    await c.until("never")
                return error

        error = asyncio.run(too_long())
        assert error["error"]["code"] == 413 and "3 s of audio" in error["error"]["message"]  # type: ignore[index]

        async def too_big_a_message() -> int | None:
            async with Client.open(server.base_url, token, max_size=None) as c:
                await c.next()
                await c.send(json.dumps({"type": "input_audio.append", "audio": "A" * 600_000}))
                with pytest.raises(ConnectionClosed) as closed:
                    await c.until("never")
                return closed.value.rcvd.code if closed.value.rcvd else None

        assert asyncio.run(too_big_a_message()) == 1009


def test_idle_sessions_are_closed(tmp_path: Path) -> None:
    with serving(_settings(tmp_path, realtime_idle_seconds=0.5)) as (server, _services, token):
        async def idle() -> dict[str, object]:
            async with Client.open(server.base_url, token) as c:
                await c.next()
                return await c.until("error")  # sends nothing

        error = asyncio.run(idle())
        assert error["error"]["code"] == 408 and "no message" in error["error"]["message"]  # type: ignore[index]


def test_no_token_in_the_handshake_log(live: tuple[LiveServer, str]) -> None:
    server, token = live

    async def session() -> None:
        async with Client.open(server.base_url, token, lowcode=True) as c:
            await c.next()

    with uvicorn_log() as log:
        asyncio.run(session())
    lines = [line for line in log if "WebSocket" in line]
    assert lines and all(token not in line and "api_token=***" in line for line in lines)


def test_encodings(live: tuple[LiveServer, str]) -> None:
    """Every audio_format encoding is decoded: a loud second is heard as one word, silence as none."""
    server, token = live
    loud = [int(0.3 * 32767 * ((-1) ** (i // 40))) for i in range(8000)]  # a square wave, 8 kHz, one second

    def encode(encoding: str, samples: list[int]) -> bytes:
        import numpy as np

        x = np.asarray(samples, np.float64) / 32768
        if encoding == "pcm_s32le":
            return (x * 2**31).astype("<i4").tobytes()
        if encoding in ("pcm_f16le", "pcm_f32le"):
            return x.astype("<f2" if encoding == "pcm_f16le" else "<f4").tobytes()
        if encoding == "pcm_mulaw":
            return bytes([0x80 if s > 0 else 0x00 if s < 0 else 0xFF for s in samples])  # +-32124, 0 (G.711)
        if encoding == "pcm_alaw":
            return bytes([0xAA if s > 0 else 0x2A if s < 0 else 0xD5 for s in samples])  # +-32256, 8 (G.711)
        return np.asarray(samples, "<i2").tobytes()

    async def heard(encoding: str) -> str:
        async with Client.open(server.base_url, token) as c:
            await c.next()
            await c.send({"type": "session.update",
                          "session": {"audio_format": {"encoding": encoding, "sample_rate": 8000}}})
            await c.until("session.updated")
            await c.send(append(encode(encoding, loud) + encode(encoding, [0] * 8000)))
            await c.send({"type": "input_audio.end"})
            return str((await c.until("transcription.done"))["text"])

    for encoding in ("pcm_s16le", "pcm_s32le", "pcm_f16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"):
        assert asyncio.run(heard(encoding)) == _WORDS[0], encoding


def test_the_bench_session(live: tuple[LiveServer, str]) -> None:
    """The realtime bench's client (``bench/suites/realtime.py``) measures a paced session end to end."""
    server, token = live
    sys.path.insert(0, str(BENCH))  # bench modules import each other by top-level name, as bench/run.py runs them
    try:
        bench = importlib.import_module("suites.realtime")
    finally:
        sys.path.remove(str(BENCH))
    result = asyncio.run(bench.session(server.base_url, token, tone(2.0) + silence(0.5), 16_000, model=REALTIME_MODEL,
                                       chunk_s=0.25))
    assert result["text"].split() == [_WORDS[0], _WORDS[1]] and result["audio_s"] == 2.5
    assert result["first_partial_s"] > 0 and 0 < result["audio_sent_s"] <= 2.5 and result["final_s"] >= 0
