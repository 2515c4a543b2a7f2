"""Create Embeddings below HTTP: request validation, model resolution, limits, output dtypes and encodings, engine
failures (fake engines, no weights), and the sentence-transformers adapter's batching over a stub model."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.base import EngineBusy, EngineError
from mistral_gateway.engines.fake import FakeEmbeddingEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.engines.sentence import SentenceTransformerEngine, plan_groups, workers_and_threads
from mistral_gateway.errors import (
    BadGateway,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)
from mistral_gateway.http.bodies import read_json
from mistral_gateway.protocol.embeddings import EmbeddingRequest, EmbeddingResponse
from mistral_gateway.services.embeddings import EmbeddingService, quantize, render, serves_embeddings
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FineTunedModelRecord
from mistral_gateway.storage.tokens import TokenRepository

WORKSPACE = "default"


class Harness:
    def __init__(self, tmp_path: Path, db: Database, engine: Any = None) -> None:
        self.catalog = ModelCatalog(default_models())  # the real catalog: ids, aliases, engines
        self.fake = engine or FakeEmbeddingEngine(dimensions=8, max_tokens=256)
        settings = Settings(data_dir=tmp_path / "data")
        self.loads = 0

        def loader(entry: ModelEntry, _path: Path | None, _settings: Settings) -> Any:
            self.loads += 1
            return self.fake

        self.engines = EngineManager(settings, loaders={("sentence-transformers", "embedding"): loader})
        self.fine_tuned = FineTunedModelRepository(db, FileEpoch(tmp_path / "models.epoch"))
        self.service = EmbeddingService(self.catalog, self.engines, self.fine_tuned, max_inputs=16,
                                        max_total_chars=1000)

    def create(self, **body: Any) -> dict[str, Any]:
        raw = asyncio.run(self.service.create(WORKSPACE, EmbeddingRequest(**body)))
        EmbeddingResponse.model_validate_json(raw)  # the documented response model
        return json.loads(raw)


@pytest.fixture
def database_backend() -> str:
    return "sqlite"  # the database is incidental here; the storage tests run on PostgreSQL too


@pytest.fixture
def h(tmp_path: Path, db: Database) -> Harness:
    return Harness(tmp_path, db)


# -- the request model ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "loc", "kind"), [
    ("", ["body", "input", "str"], "string_too_short"),
    ([], ["body", "input", "list[str]"], "too_short"),
    (["fine", ""], ["body", "input", "list[str]", 1], "string_too_short"),
    ([1], ["body", "input", "list[str]", 0], "string_type"),
    (5, ["body", "input", "str"], "string_type"),
    (None, ["body", "input", "str"], "string_type"),
])
def test_empty_or_mistyped_input_is_422_with_fastapi_detail(make_request: Any, value: Any, loc: list[Any],
                                                            kind: str) -> None:
    body = json.dumps({"model": "mistral-embed", "input": value}).encode()
    with pytest.raises(ValidationFailed) as err:
        asyncio.run(read_json(make_request([body]), EmbeddingRequest, 1 << 20))
    assert err.value.status == 422
    assert [(d["loc"], d["type"]) for d in err.value.detail] == [(loc, kind)]
    assert all({"loc", "msg", "type"} <= set(d) for d in err.value.detail)


def test_missing_fields_and_bad_enums_are_422() -> None:
    for body in ({"input": "x"}, {"model": "m"}, {"model": "m", "input": "x", "output_dtype": "float16"},
                 {"model": "m", "input": "x", "encoding_format": "hex"},
                 {"model": "m", "input": "x", "output_dimension": 0}):
        with pytest.raises(ValidationError):
            EmbeddingRequest.model_validate(body)


def test_request_defaults_and_nulls() -> None:
    request = EmbeddingRequest.model_validate({"model": "m", "input": "x", "output_dtype": None,
                                               "encoding_format": None, "metadata": {"k": "v"}, "user": "ignored"})
    assert (request.texts, request.dtype, request.encoding) == (["x"], "float", "float")
    assert EmbeddingRequest(model="m", input=["a", " "]).texts == ["a", " "]  # whitespace is not empty


# -- resolution -------------------------------------------------------------------------------------------------

def test_single_string(h: Harness) -> None:
    out = h.create(model="mistral-embed", input="Embed this sentence.")
    assert re.fullmatch(r"[0-9a-f]{32}", out["id"])
    assert (out["object"], out["model"]) == ("list", "mistral-embed")
    assert [(d["object"], d["index"], len(d["embedding"])) for d in out["data"]] == [("embedding", 0, 8)]
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}  # fake: words + 2
    assert np.linalg.norm(out["data"][0]["embedding"]) == pytest.approx(1, abs=1e-6)


def test_list_keeps_order_and_sums_usage(h: Harness) -> None:
    texts = ["one", "two words", "three more words"]
    out = h.create(model="all-minilm-l6-v2", input=texts)
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    singles = [h.create(model="codestral-embed", input=t)["data"][0]["embedding"] for t in texts]
    assert [d["embedding"] for d in out["data"]] == singles
    assert out["usage"]["prompt_tokens"] == 3 + 4 + 5
    assert out["model"] == "all-minilm-l6-v2"
    assert len({h.create(model="mistral-embed", input="x")["id"] for _ in range(3)}) == 3
    assert h.loads == 1  # aliases share one engine, loaded once


def test_unknown_model_is_404(h: Harness) -> None:
    with pytest.raises(NotFound) as err:
        h.create(model="no-such-model", input="x")
    assert (err.value.code, err.value.param, err.value.type) == ("MODEL_NOT_FOUND", "model", "invalid_request_error")
    assert h.loads == 0


@pytest.mark.parametrize("model", ["mistral-small-latest", "qwen2.5-coder-1.5b-instruct", "ministral-8b-latest"])
def test_chat_model_is_400_naming_the_capability(h: Harness, model: str) -> None:
    with pytest.raises(BadRequest) as err:
        h.create(model=model, input="x")
    assert err.value.code == "UNSUPPORTED_MODEL_CAPABILITY" and err.value.param == "model"
    assert "'embeddings'" in err.value.message and model in err.value.message
    assert h.loads == 0


def test_fine_tuned_model_is_400_not_404(h: Harness, db: Database) -> None:
    model_id = "ft:mistral-small-latest:0a1b2c3d:20250101:4e5f6a7b"
    workspace = TokenRepository(db).ensure_workspace("ft-owner", now=1).id
    h.fine_tuned.add(FineTunedModelRecord(
        id=model_id, workspace_id=workspace, root="mistral-small-latest", job_id="job", name=None, description=None,
        archived=False, capabilities=("completion_chat",), max_context_length=32768, created_at=int(time.time())))
    with pytest.raises(BadRequest, match="embeddings"):
        asyncio.run(h.service.create(workspace, EmbeddingRequest(model=model_id, input="x")))
    with pytest.raises(NotFound):  # another workspace does not see it
        h.create(model=model_id, input="x")


def test_which_entries_serve_embeddings() -> None:
    kinds = {e.id: serves_embeddings(e) for e in default_models()}
    assert kinds == {"qwen2.5-coder-1.5b-instruct": False, "smollm2-135m-instruct": False, "all-minilm-l6-v2": True,
                     "moderation-minilm-l6-v2": False, "whisper-base": False}
    assert serves_embeddings(ModelEntry(id="f", engine="fake", capabilities=[]))
    assert not serves_embeddings(ModelEntry(id="f", engine="fake"))  # completion_chat by default


# -- options and limits -----------------------------------------------------------------------------------------

def test_output_dimension(h: Harness) -> None:
    assert len(h.create(model="mistral-embed", input="x", output_dimension=8)["data"][0]["embedding"]) == 8
    assert len(h.create(model="mistral-embed", input="x", dimensions=8)["data"][0]["embedding"]) == 8
    for kwargs, param in (({"output_dimension": 4}, "output_dimension"), ({"dimensions": 16}, "dimensions"),
                          ({"output_dimension": 8, "dimensions": 4}, "output_dimension")):
        with pytest.raises(BadRequest) as err:
            h.create(model="mistral-embed", input="x", **kwargs)
        assert err.value.param == param
    with pytest.raises(BadRequest) as err:
        h.create(model="mistral-embed", input="x", output_dimension=256)
    assert err.value.code == "UNSUPPORTED_OUTPUT_DIMENSION" and "8-dimensional" in err.value.message


def test_too_many_inputs_is_400_and_too_much_text_is_413(h: Harness) -> None:
    assert len(h.create(model="mistral-embed", input=["x"] * 16)["data"]) == 16
    with pytest.raises(BadRequest) as err:
        h.create(model="mistral-embed", input=["x"] * 17)
    assert err.value.code == "TOO_MANY_INPUTS" and "16" in err.value.message
    h.create(model="mistral-embed", input=["y" * 500, "z" * 500])
    with pytest.raises(PayloadTooLarge) as too_large:
        h.create(model="mistral-embed", input=["y" * 500, "z" * 501])
    assert too_large.value.status == 413 and too_large.value.code == "INPUT_TOO_LARGE"


def test_base64_is_little_endian_float32_of_the_same_values(h: Harness) -> None:
    floats = h.create(model="mistral-embed", input=["a", "b"])
    encoded = h.create(model="mistral-embed", input=["a", "b"], encoding_format="base64")
    for f, e in zip(floats["data"], encoded["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(e["embedding"]), dtype="<f4")
        assert decoded.tolist() == np.asarray(f["embedding"], dtype=np.float32).tolist()


def test_float_json_round_trips_float32_exactly() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    body = json.loads(render("0" * 32, "m", vectors, 7))
    assert np.array_equal(np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32), vectors)
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}


def test_quantization() -> None:
    x = np.array([[1.0, -1.0, 0.5, -0.5, 0.0, 0.001, -0.001, 0.25]], dtype=np.float32)
    assert quantize(x, "int8").tolist() == [[127, -127, 64, -64, 0, 0, 0, 32]]
    assert quantize(x, "uint8").tolist() == [[255, 0, 191, 64, 128, 128, 127, 159]]
    assert quantize(x, "ubinary").tolist() == [[0b10100101]]  # 1 where x > 0, first dimension = high bit
    assert quantize(x, "binary").tolist() == [[0b10100101 - 128]]
    assert quantize(x, "int8").dtype == np.int8 and quantize(x, "ubinary").dtype == np.uint8


@pytest.mark.parametrize(("dtype", "length", "low", "high"), [
    ("int8", 8, -127, 127), ("uint8", 8, 0, 255), ("binary", 1, -128, 127), ("ubinary", 1, 0, 255)])
def test_integer_dtypes_through_the_service(h: Harness, dtype: str, length: int, low: int, high: int) -> None:
    out = h.create(model="mistral-embed", input=["a", "b"], output_dtype=dtype)
    for item in out["data"]:
        assert len(item["embedding"]) == length
        assert all(isinstance(v, int) and low <= v <= high for v in item["embedding"])
    packed = h.create(model="mistral-embed", input=["a"], output_dtype=dtype, encoding_format="base64")
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(np.frombuffer(raw, dtype=np.int8 if dtype in ("int8", "binary") else np.uint8)) == \
        out["data"][0]["embedding"]


def test_large_results_render_off_the_loop(tmp_path: Path, db: Database) -> None:
    h = Harness(tmp_path, db)
    h.service.max_inputs = 500
    h.service.max_total_chars = 10_000
    out = h.create(model="mistral-embed", input=[f"text {i}" for i in range(300)])
    assert [d["index"] for d in out["data"]] == list(range(300))


# -- engine failures --------------------------------------------------------------------------------------------

class FailingEngine(FakeEmbeddingEngine):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def embed(self, texts: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize(("exc", "expected", "code"), [
    (EngineBusy("queue full", retry_after=2.0), ServiceUnavailable, "MODEL_BUSY"),
    (EngineError("boom"), BadGateway, "ENGINE_ERROR"),
])
def test_engine_failures(tmp_path: Path, db: Database, exc: Exception, expected: type[Exception], code: str) -> None:
    h = Harness(tmp_path, db, engine=FailingEngine(exc))
    with pytest.raises(expected) as err:
        h.create(model="mistral-embed", input="x")
    assert err.value.code == code  # type: ignore[attr-defined]
    assert err.value.headers["Retry-After"] == "2"  # type: ignore[attr-defined]


def test_a_load_failure_is_503_naming_the_model(tmp_path: Path, db: Database) -> None:
    h = Harness(tmp_path, db)

    def broken(*_: Any) -> Any:
        raise EngineError("weights are corrupt")

    h.engines = EngineManager(Settings(data_dir=tmp_path / "d2"), loaders={("sentence-transformers", "embedding"):
                                                                            broken})
    h.service = EmbeddingService(h.catalog, h.engines)
    with pytest.raises(ServiceUnavailable, match=r"mistral-embed.*weights are corrupt") as err:
        h.create(model="mistral-embed", input="x")
    assert err.value.code == "MODEL_LOAD_FAILED" and err.value.headers["Retry-After"] == "30"


def test_the_fake_engine_through_the_default_loader(tmp_path: Path) -> None:
    entry = ModelEntry(id="fake-embed", engine="fake", capabilities=[], max_context_length=64)
    service = EmbeddingService(ModelCatalog([entry]), EngineManager(Settings(data_dir=tmp_path)))
    out = json.loads(asyncio.run(service.create(WORKSPACE, EmbeddingRequest(model="fake-embed", input="a b"))))
    assert len(out["data"][0]["embedding"]) == 8 and out["usage"]["prompt_tokens"] == 4


# -- the sentence-transformers adapter over a stub model (no torch) ---------------------------------------------

class StubTokenizer:
    def __call__(self, texts: list[str], *, max_length: int, **_: Any) -> dict[str, list[list[int]]]:
        return {"input_ids": [[101, *range(min(len(t.split()), max_length - 2)), 102] for t in texts]}


class StubModel:
    """``encode`` returns [len(text), batch size, 0, ...]; records every call."""

    max_seq_length = 6

    def __init__(self) -> None:
        self.tokenizer = StubTokenizer()
        self.calls: list[list[str]] = []

    def get_embedding_dimension(self) -> int:
        return 4

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), len(texts), 0, 0] for t in texts], dtype=np.float32)


@pytest.fixture
def stub() -> Iterator[tuple[SentenceTransformerEngine, StubModel]]:
    model = StubModel()
    engine = SentenceTransformerEngine(model, name="stub", batch_size=4, max_wait=0.01)
    yield engine, model
    engine.close()


def test_adapter_counts_tokens_with_specials_truncated(stub: tuple[SentenceTransformerEngine, StubModel]) -> None:
    engine, _ = stub
    assert (engine.dimensions, engine.max_tokens) == (4, 6)
    out = asyncio.run(engine.embed(["a", "a b c", "a b c d e f g h"]))
    assert out.token_counts == [3, 5, 6]  # [CLS] + words + [SEP], at most max_seq_length
    assert [v[0] for v in out.vectors] == [1, 5, 15]
    assert asyncio.run(engine.embed([])).vectors == []


def test_adapter_sorts_large_requests_by_length_and_restores_order(
        stub: tuple[SentenceTransformerEngine, StubModel]) -> None:
    engine, model = stub
    texts = ["x" * n for n in (9, 1, 7, 3, 10, 2, 8, 4, 6, 5)]
    out = asyncio.run(engine.embed(texts))
    assert [int(v[0]) for v in out.vectors] == [len(t) for t in texts]
    assert [[len(t) for t in call] for call in model.calls] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert engine.stats.calls == 3 and engine.stats.items == 10


def test_adapter_merges_concurrent_requests(stub: tuple[SentenceTransformerEngine, StubModel]) -> None:
    engine, model = stub

    async def main() -> list[Any]:
        return await asyncio.gather(*[engine.embed([f"text {i}"]) for i in range(8)])

    results = asyncio.run(main())
    assert [r.vectors[0][0] for r in results] == [len(f"text {i}") for i in range(8)]
    assert len(model.calls) < 8 and max(len(c) for c in model.calls) <= 4


class MeetingStubModel(StubModel):
    """Its first ``encode`` waits until the other replica's first ``encode`` has started too (at most 10 s), so a
    test sees both replicas at work whatever the scheduling: one replica draining every batch alone breaks it."""

    def __init__(self, meeting: threading.Barrier) -> None:
        super().__init__()
        self._meeting = meeting

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        if not self.calls:
            self._meeting.wait()
        return super().encode(texts, **kwargs)


def test_adapter_replicas_work_side_by_side() -> None:
    meeting = threading.Barrier(2, timeout=10)
    models = [MeetingStubModel(meeting), MeetingStubModel(meeting)]
    engine = SentenceTransformerEngine(models[0], replicas=models[1:], name="pair", batch_size=4, max_wait=0.0)
    try:
        texts = [f"text number {i}" for i in range(16)]
        out = asyncio.run(engine.embed(texts))
        assert [v[0] for v in out.vectors] == [len(t) for t in texts]
        assert engine.workers == 2 and all(m.calls for m in models)  # a large request keeps both busy
    finally:
        engine.close()


def test_length_groups_trade_padding_for_calls() -> None:
    assert plan_groups([]) == []
    assert plan_groups([7]) == [(0, 1)]
    assert plan_groups([20] * 32) == [(0, 32)]  # equal lengths: one call
    assert plan_groups([10, 11, 12, 200, 210], overhead=48) == [(0, 3), (3, 5)]  # a long tail gets its own call
    assert plan_groups([10, 11, 12, 13], overhead=1000) == [(0, 4)]  # calls cost more than any padding
    assert plan_groups([10, 20, 30], overhead=0) == [(0, 1), (1, 2), (2, 3)]  # calls are free: no padding
    lengths = sorted((i * 7919) % 40 + 10 for i in range(32))
    groups = plan_groups(lengths, overhead=48)
    assert groups[0][0] == 0 and groups[-1][1] == 32 and all(a[1] == b[0] for a, b in itertools.pairwise(groups))

    def cost(gs: list[tuple[int, int]]) -> float:
        return sum(48 + (end - start) * lengths[end - 1] for start, end in gs)

    assert cost(groups) <= min(cost([(0, 32)]), cost([(i, i + 1) for i in range(32)]))


@pytest.mark.parametrize(("threads", "parallel", "expected"), [
    (2, 4, (2, 1)), (16, 4, (4, 4)), (1, 4, (1, 1)), (8, 1, (1, 8)), (6, 4, (3, 2)), (7, 4, (1, 7))])
def test_workers_and_threads(threads: int, parallel: int, expected: tuple[int, int]) -> None:
    entry = ModelEntry(id="e", engine="sentence-transformers", threads=threads, parallel=parallel)
    assert workers_and_threads(entry) == expected
