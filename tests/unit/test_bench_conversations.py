"""The conversations benchmark's pieces that need no server: the rows built from measured latencies, and the
catalog it serves (the default one plus a fake chat model)."""

from __future__ import annotations

import json

import pytest

from bench_modules import bench_module
from mistral_gateway.config import Settings

conversations = bench_module("suites.conversations")


def test_a_row_takes_the_median_and_the_99th_percentile_over_every_round() -> None:
    rounds = [[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]]
    row = conversations._row("s", "/x", rounds, [0.003, 0.006])
    assert row.p50_ms == 3.5 and row.p99_ms == 100.0
    assert row.rps == 6 / (115.0 / 1e3)
    assert row.cpu_us_per_request == pytest.approx(1500.0)
    assert [s.p50_ms for s in row.samples] == [2.0, 5.0]


def test_the_served_catalog_is_the_default_one_plus_the_fake_chat_model() -> None:
    models = json.loads(conversations._models_env())
    settings = Settings(models=models)
    ids = [m.id for m in settings.models]
    assert ids[-1] == conversations.FAKE_MODEL and settings.models[-1].engine == "fake"
    assert ids[:-1] == [m.id for m in Settings().models]
