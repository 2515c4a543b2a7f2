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


def test_the_overhead_is_the_median_of_pairwise_differences() -> None:
    # a load spike that hits both sides of the third pair moves neither the differences nor their median
    chat = [100.0, 102.0, 400.0, 101.0]
    conversation = [101.0, 103.5, 401.0, 102.0]
    assert conversations.added_ms(chat, conversation) == 1.0


class FakeServer:
    def __init__(self) -> None:
        self.cpu = 0.0

    def cpu_seconds(self) -> float:
        self.cpu += 0.001
        return self.cpu


class Ok:
    status_code = 200


def test_pairs_alternate_which_side_goes_first() -> None:
    calls: list[str] = []
    sides = {"chat": lambda: calls.append("chat") or Ok(), "conversation": lambda: calls.append("conv") or Ok()}
    latencies, cpu = conversations._paired(sides, 3, FakeServer(), first=1)
    assert calls == ["conv", "chat", "chat", "conv", "conv", "chat"]
    assert [len(v) for v in latencies.values()] == [3, 3] and cpu["chat"] == pytest.approx(0.003)


def test_the_library_documents_differ_and_each_states_its_fact() -> None:
    docs = [conversations.library_document(i) for i in range(conversations.LIBRARY_DOCUMENTS)]
    assert len(set(docs)) == len(docs) and all(3000 < len(d) < 4000 for d in docs)
    assert docs[7].endswith(b"Document 7 says the code is 55433.")
