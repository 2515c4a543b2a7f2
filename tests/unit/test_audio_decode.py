"""engines.audio: every upload format decodes to mono float32 at 16 kHz; limits on bytes and seconds (from the header
and while decoding); corrupt, empty, non-audio and FFmpeg-playlist bytes are InvalidInput; raw PCM conversion."""

from __future__ import annotations

import numpy as np
import pytest

from mistral_gateway.engines import audio as audio_module
from mistral_gateway.engines.audio import AudioTooLarge, Pcm16Resampler, decode_audio, pcm16_to_float
from mistral_gateway.engines.base import SAMPLE_RATE, InvalidInput
from speech_material import ENCODINGS, encode, tone_wav
from vision_assets import png

LIMITS = {"max_seconds": 60.0, "max_bytes": 10_000_000}


@pytest.fixture(scope="module")
def stereo_tone() -> bytes:
    return tone_wav(1.5, rate=44_100, channels=2)


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_each_upload_format_decodes_to_mono_16k(stereo_tone: bytes, name: str) -> None:
    audio = decode_audio(encode(stereo_tone, name), **LIMITS)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # 1.5 s, give or take the codec's priming and padding (AAC adds up to a frame)
    assert abs(audio.size / SAMPLE_RATE - 1.5) < 0.1
    assert 0.3 < float(np.abs(audio).max()) <= 1.0  # the tone is there, in range


def test_wav_at_16k_keeps_its_samples() -> None:
    wav = tone_wav(0.5, rate=SAMPLE_RATE)
    audio = decode_audio(wav, **LIMITS)
    expected = np.frombuffer(wav[44:], dtype="<i2").astype(np.float32) / 32768
    assert audio.size == expected.size and np.allclose(audio, expected, atol=1e-4)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    wav = tone_wav(1.0)
    with pytest.raises(AudioTooLarge, match=f"limit is {len(wav) - 1} bytes") as err:
        decode_audio(wav, max_seconds=60, max_bytes=len(wav) - 1)
    assert (err.value.unit, err.value.limit) == ("bytes", len(wav) - 1)
    assert isinstance(err.value, InvalidInput)  # a caller that does not tell it apart still answers 4xx


def test_longer_than_the_limit_by_its_header() -> None:
    with pytest.raises(AudioTooLarge, match=r"lasts 4\.0 seconds; the limit is 2 seconds") as err:
        decode_audio(tone_wav(4.0), max_seconds=2, max_bytes=10_000_000)
    assert (err.value.unit, err.value.limit) == ("seconds", 2)


def test_longer_than_the_limit_while_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that states no duration (or lies about it) is stopped once the decoded samples pass the limit."""
    monkeypatch.setattr(audio_module, "_stated_seconds", lambda container, stream: None)
    with pytest.raises(AudioTooLarge, match="longer than the limit of 2 seconds"):
        decode_audio(encode(tone_wav(3.0), "mp3"), max_seconds=2, max_bytes=10_000_000)
    assert decode_audio(tone_wav(1.9), max_seconds=2, max_bytes=10_000_000).size == int(1.9 * SAMPLE_RATE)


def test_a_header_within_its_slack_is_still_counted_while_decoding() -> None:
    with pytest.raises(AudioTooLarge, match="longer than the limit of 2 seconds"):  # 2.5 s: within the header slack
        decode_audio(tone_wav(2.5), max_seconds=2, max_bytes=10_000_000)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\x00" * 4096, "not audio"),
    (b"hello, this is not a sound file at all\n" * 50, "not audio"),
    (png(16, 16), "not audio"),
    (tone_wav(1.0)[:44], "no samples"),  # a header alone (a truncated file decodes what it holds)
    (b"RIFF\xff\xff\xff\x7fWAVEfmt " + b"\xff" * 200, "not audio"),
])
def test_bad_bytes_are_invalid_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as err:
        decode_audio(data, **LIMITS)
    assert not isinstance(err.value, AudioTooLarge)


def test_a_damaged_middle_decodes_or_refuses_but_never_crashes() -> None:
    mp3 = bytearray(encode(tone_wav(2.0), "mp3"))
    rng = np.random.default_rng(7)
    for start in range(200, len(mp3) - 100, 997):
        mp3[start:start + 50] = rng.integers(0, 256, 50, dtype=np.uint8).tobytes()
    try:
        audio = decode_audio(bytes(mp3), **LIMITS)
    except InvalidInput:
        return
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and audio.size <= 2.2 * SAMPLE_RATE


@pytest.mark.parametrize("playlist", [
    b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n",
    b"ffconcat version 1.0\nfile '/etc/passwd'\n",
])
def test_playlist_and_concat_demuxers_are_not_allowed(playlist: bytes) -> None:
    """They would make FFmpeg read files or fetch URLs named in the upload: only audio demuxers may open it."""
    with pytest.raises(InvalidInput, match="not audio"):
        decode_audio(playlist, **LIMITS)


def test_pcm16_at_16k_is_converted_exactly() -> None:
    samples = np.array([0, 16384, -16384, 32767, -32768], dtype="<i2")
    out = pcm16_to_float(samples.tobytes(), SAMPLE_RATE)
    assert out.dtype == np.float32 and out.tolist() == [0.0, 0.5, -0.5, 32767 / 32768, -1.0]


@pytest.mark.parametrize("rate", [8_000, 24_000, 44_100, 48_000])
def test_pcm16_is_resampled_to_16k(rate: int) -> None:
    t = np.arange(rate) / rate  # one second of 300 Hz
    pcm = (np.sin(2 * np.pi * 300 * t) * 16_000).astype("<i2").tobytes()
    out = pcm16_to_float(pcm, rate)
    assert abs(out.size - SAMPLE_RATE) <= 32
    spectrum = np.abs(np.fft.rfft(out[:SAMPLE_RATE]))
    assert abs(int(np.argmax(spectrum)) * SAMPLE_RATE / min(out.size, SAMPLE_RATE) - 300) < 5  # still 300 Hz


def test_pcm16_resampler_in_odd_chunks_matches_the_whole_buffer() -> None:
    pcm = (np.sin(np.arange(48_000) / 7) * 9_000).astype("<i2").tobytes()
    whole = pcm16_to_float(pcm, 48_000)
    resampler = Pcm16Resampler(48_000)
    parts = [resampler.feed(pcm[i:i + 1001]) for i in range(0, len(pcm), 1001)]  # odd sizes split samples
    chunked = np.concatenate([*parts, resampler.flush()])
    assert chunked.size == whole.size and np.allclose(chunked, whole, atol=1e-3)


@pytest.mark.parametrize(("data", "rate", "message"), [(b"\x00\x01\x02", 16_000, "even number of bytes"),
                                                       (b"\x00\x00", 0, "out of range"),
                                                       (b"\x00\x00", 10_000_000, "out of range")])
def test_bad_pcm_is_invalid_input(data: bytes, rate: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        pcm16_to_float(data, rate)
