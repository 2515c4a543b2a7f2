"""The in-process side of the speech suite: the gateway's own loader builds the speech model (the same weights and
settings as ``serve``), then each clip of the corpus is decoded (PyAV) and transcribed, one at a time, with no server
in between. Run as its own process; prints one JSON object.

    python bench/speech_direct.py --corpus corpus.json --data-dir DIR [--rounds 2]

The corpus is a JSON list of {"audio": path of an audio file, "text": what it says}.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import direct_args  # a sibling: this file runs as a script

__all__ = ["main"]


async def _clip(engine: Any, data: bytes, settings: Any) -> dict[str, Any]:
    from mistral_gateway.engines.audio import decode_audio
    from mistral_gateway.engines.base import TranscriptionOptions

    started = time.perf_counter()
    audio = decode_audio(data, max_seconds=settings.audio_max_seconds, max_bytes=settings.audio_max_bytes)
    transcript = await engine.transcribe(audio, TranscriptionOptions())
    first: float | None = None
    texts = []
    async for segment in transcript.segments:
        first = time.perf_counter() - started if first is None else first
        texts.append(segment.text)
    return {"latency_s": time.perf_counter() - started, "first_segment_s": first, "text": "".join(texts),
            "language": transcript.language, "audio_s": transcript.duration}


async def _rounds(engine: Any, clips: list[bytes], settings: Any, rounds: int) -> list[dict[str, Any]]:
    await _clip(engine, clips[0], settings)  # warm-up
    out = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        results = [await _clip(engine, data, settings) for data in clips]
        out.append({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "clips": results})
    return out


def main() -> None:
    args = direct_args.parser(__doc__, "voxtral-mini-latest").parse_args()
    manager, entry = direct_args.resolve(args)
    from mistral_gateway.config import load_settings

    settings = load_settings(data_dir=args.data_dir)  # the audio limits, as direct_args.resolve read them
    corpus: list[dict[str, str]] = json.loads(args.corpus.read_text())
    clips = [Path(item["audio"]).read_bytes() for item in corpus]

    async def run() -> list[dict[str, Any]]:
        engine = await manager.speech(entry)  # the server's loader: the same weights and settings
        return await _rounds(engine, clips, settings, args.rounds)

    rounds = asyncio.run(run())
    manager.close()
    print(json.dumps({"clips": len(clips), "rounds": rounds}))


if __name__ == "__main__":
    main()
