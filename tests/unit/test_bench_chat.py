"""The chat benchmark's verdicts from measured windows (no model, no server): the single-stream decode ratio is the
median of round-by-round ratios of adjacent engine/gateway windows, and the scaling checks compare gateway rows."""

from __future__ import annotations

import pytest

from bench_modules import bench_module

chat = bench_module("suites.chat")


def window(tok_s: float, *, decode: float | None = None, ttft: float = 10.0) -> object:
    return chat.ChatSample(tok_s=tok_s, decode_tok_s=decode if decode is not None else tok_s, ttft_ms=[ttft] * 3,
                           requests=3, completed=3, tokens=int(tok_s * 10), errors=0, error_messages=[],
                           duration_s=10.0, server_cpu_s=1.0, client_cpu_s=0.1)


def samples(engine1: list[float], gateway1: list[float], *, engine8: float = 220.0, gateway8: float = 215.0,
            ttft: tuple[float, float] = (8.0, 15.0)) -> dict[tuple[str, int], list[object]]:
    out: dict[tuple[str, int], list[object]] = {
        ("engine", 1): [window(v, ttft=ttft[0]) for v in engine1],
        ("gateway", 1): [window(v, ttft=ttft[1]) for v in gateway1],
    }
    for n, (e, g) in {4: (170.0, 165.0), 8: (engine8, gateway8)}.items():
        out[("engine", n)] = [window(e, decode=e / n)] * 2
        out[("gateway", n)] = [window(g, decode=g / n)] * 2
    return out


def check(rows: list[object], scenario: str, name: str) -> object:
    row = next(r for r in rows if r.scenario == scenario)
    return next(c for c in row.checks if c.name == name)


def test_paired_ratios_follow_rounds_not_medians() -> None:
    # The machine drifts: fast rounds then slow ones. Medians of each side would compare different minutes.
    engine = [window(v) for v in (130.0, 128.0, 106.0, 105.0, 104.0)]
    gateway = [window(v) for v in (126.0, 124.0, 103.0, 101.0, 100.0)]
    assert chat.paired_ratios(gateway, engine) == pytest.approx([126 / 130, 124 / 128, 103 / 106, 101 / 105,
                                                                 100 / 104])


def test_decode_check_uses_the_median_paired_ratio() -> None:
    model = chat.MODELS[0]
    rows = chat._model_rows(model, samples([130, 128, 106, 105, 104], [126, 124, 103, 101, 100]))
    decode = check(rows, "smollm2-135m 1 stream gateway", "decode tok/s vs engine")
    assert decode.passed and decode.measured.startswith("0.97x (median of 5 paired rounds")
    slow = chat._model_rows(model, samples([130, 128, 106, 105, 104], [118, 116, 96, 95, 94]))
    assert not check(slow, "smollm2-135m 1 stream gateway", "decode tok/s vs engine").passed


def test_ttft_and_scaling_checks() -> None:
    model = chat.MODELS[0]  # SmolLM2: 8 streams >= 2x one stream
    rows = chat._model_rows(model, samples([110] * 3, [107] * 3, gateway8=215.0, ttft=(8.0, 15.0)))
    assert check(rows, "smollm2-135m 1 stream gateway", "TTFT overhead (p50)").measured.startswith("+7.0 ms")
    scaling = check(rows, "smollm2-135m 8 streams gateway", "8 streams vs 1")
    assert scaling.passed and scaling.measured == "2.01x"
    short = chat._model_rows(model, samples([110] * 3, [107] * 3, gateway8=200.0, ttft=(8.0, 19.0)))
    assert not check(short, "smollm2-135m 8 streams gateway", "8 streams vs 1").passed
    assert not check(short, "smollm2-135m 1 stream gateway", "TTFT overhead (p50)").passed
