"""The engine-slots gauges: a llama.cpp engine's busy slots, slots and waiting requests, read from the engine
manager when /metrics is scraped; engines without slots are not reported."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines import llama
from mistral_gateway.engines.fake import FakeEmbeddingEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.engines.worker_process import LoopbackServer
from mistral_gateway.services.metrics import Metrics


def gauges(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["model"]): s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            if family.name.startswith("mistral_gateway_engine_") for s in family.samples}


def test_busy_slots_and_waiting_requests_at_scrape_time(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    chat = ModelEntry(id="chat", path=str(weights), parallel=2)
    embed = ModelEntry(id="embed", engine="sentence-transformers", capabilities=[])

    def load_chat(entry: ModelEntry, path: Path | None, settings: Settings, **_: Any) -> llama.LlamaEngine:
        assert path is not None
        # nothing listens at the server's address: no request is made, only admissions counted
        return llama.LlamaEngine(entry, path, threads=1, queue_limit=4, server_factory=lambda config, model_id:
                                 LoopbackServer("http://127.0.0.1:9", config["key"], model_id))

    manager = EngineManager(Settings(data_dir=tmp_path / "data", models=[chat, embed]), loaders={
        ("llama.cpp", "text"): load_chat,
        ("sentence-transformers", "embedding"): lambda *_, **__: FakeEmbeddingEngine()})
    metrics = Metrics(engine_slots=manager.slot_usage)
    assert gauges(metrics) == {}  # nothing loaded yet
    engine = asyncio.run(manager.text(chat))
    asyncio.run(manager.embedding(embed))
    try:
        assert gauges(metrics) == {("mistral_gateway_engine_slots_busy", "chat"): 0,
                                   ("mistral_gateway_engine_slots", "chat"): 2,
                                   ("mistral_gateway_engine_waiting", "chat"): 0}
        for _ in range(3):  # three requests admitted: two generate, one waits for a slot
            engine._admit()
        assert gauges(metrics) == {("mistral_gateway_engine_slots_busy", "chat"): 2,
                                   ("mistral_gateway_engine_slots", "chat"): 2,
                                   ("mistral_gateway_engine_waiting", "chat"): 1}
        engine._release()
        engine._release()
        assert gauges(metrics)[("mistral_gateway_engine_slots_busy", "chat")] == 1
    finally:
        manager.close()
