"""Images on the real llama.cpp multimodal path: SmolLM2-135M with a tiny random-weight projector (written by
``vision_assets``), through a live loopback server, the Mistral SDK and both dialects.

The projector's weights are random, so answers mean nothing; what is asserted is that the real path runs (image
decode, encoder, projector, embeddings into the text model): 200s, text, and prompt tokens that grow by the same
amount for each image.
"""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral

from mistral_gateway.config import ModelEntry, Settings
from support import LiveServer, serving
from vision_assets import IMAGE_TOKENS, png, write_tiny_mmproj

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

VISION = "smol-vision"
IN_PROCESS = "smol-vision-inproc"  # isolate: false: llama.cpp inside the server process
TEXT_ONLY = "ministral-3b-latest"  # SmolLM2-135M without a projector
IMAGE = png(40, 30)
DATA_URL = "data:image/png;base64," + base64.b64encode(IMAGE).decode()


class _Images(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = IMAGE if self.path == "/red.png" else b"not found"
        self.send_response(200 if self.path == "/red.png" else 404)
        self.send_header("Content-Type", "image/png" if self.path == "/red.png" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ffmpeg_trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``ffprobe`` and ``ffmpeg`` first on PATH, recording any call: llama.cpp must never hand request bytes to one."""
    bin_dir = tmp_path_factory.mktemp("trap-bin")
    log = bin_dir / "called.log"
    for name in ("ffprobe", "ffmpeg"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit 1\n', encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        yield log


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path,
          ffmpeg_trap: Path) -> Iterator[tuple[LiveServer, str]]:
    data = tmp_path_factory.mktemp("vision-real")
    projector = write_tiny_mmproj(data / "mmproj-tiny.gguf")
    models = [
        ModelEntry(id=VISION, asset="smollm2-135m-instruct-q4_1", mmproj=str(projector), max_context_length=512,
                   parallel=2),
        ModelEntry(id="smollm2-135m-instruct", aliases=[TEXT_ONLY], asset="smollm2-135m-instruct-q4_1",
                   max_context_length=512, parallel=2),
        ModelEntry(id=IN_PROCESS, asset="smollm2-135m-instruct-q4_1", mmproj=str(projector), max_context_length=512,
                   parallel=1, isolate=False),
    ]
    # the test's image server is on loopback: allowed here by fetch_allow (the default refuses it, see test_images.py)
    settings = Settings(data_dir=data, weights_path=weights_dir, bootstrap_dev_token=False, models=models,
                        fetch_allow=["127.0.0.0/8"])
    with serving(settings, "vision") as (server, _, token):
        yield server, token


@pytest.fixture(scope="module")
def sdk(stack: tuple[LiveServer, str]) -> Mistral:
    server, token = stack
    return Mistral(api_key=token, server_url=server.base_url)


def _parts(*images: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": "What is in this picture?"},
            *({"type": "image_url", "image_url": url} for url in images)]


def _ask(content: Any, model: str = VISION, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 6, "temperature": 0,
            **kw}


def _post(stack: tuple[LiveServer, str], body: dict[str, Any]) -> httpx.Response:
    server, token = stack
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {token}"})


def test_images_run_through_the_projector_and_count_as_prompt_tokens(sdk: Mistral) -> None:
    text = sdk.chat.complete(**_ask(_parts()))
    one = sdk.chat.complete(**_ask(_parts(DATA_URL)))
    two = sdk.chat.complete(**_ask(_parts(DATA_URL, {"url": DATA_URL, "detail": "low"})))  # type: ignore[arg-type]
    for res in (one, two):
        assert isinstance(res.choices[0].message.content, str) and res.choices[0].message.content
        assert res.choices[0].finish_reason in ("stop", "length")
        assert 0 < res.usage.completion_tokens <= 6
        assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens
    per_image = one.usage.prompt_tokens - text.usage.prompt_tokens
    assert per_image >= IMAGE_TOKENS  # the image's embeddings (and the projector type's wrapper text)
    assert two.usage.prompt_tokens - text.usage.prompt_tokens == 2 * per_image


def test_streamed_image_answer_matches_the_whole_one(sdk: Mistral) -> None:
    body = _ask(_parts(DATA_URL), random_seed=3)
    whole = sdk.chat.complete(**body)
    pieces, last = [], None
    for event in sdk.chat.stream(**body):
        pieces.append(event.data.choices[0].delta.content or "")
        last = event.data
    assert last is not None and last.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert "".join(pieces) == whole.choices[0].message.content


def test_image_url_is_fetched(stack: tuple[LiveServer, str], image_server: str) -> None:
    r = _post(stack, _ask(_parts(f"{image_server}/red.png")))
    assert r.status_code == 200, r.text
    by_data = _post(stack, _ask(_parts(DATA_URL)))
    assert r.json()["usage"]["prompt_tokens"] == by_data.json()["usage"]["prompt_tokens"]
    missing = _post(stack, _ask(_parts(f"{image_server}/nope.png")))
    assert missing.status_code == 400 and "messages[0].content[1]" in missing.json()["message"]


def test_text_only_requests_and_min_tokens_work_on_a_vision_model(sdk: Mistral) -> None:
    res = sdk.chat.complete(**_ask("Say hello."))
    assert res.choices[0].message.content and res.usage.prompt_tokens > 5
    res = sdk.chat.complete(**_ask(_parts(DATA_URL), min_tokens=4, max_tokens=5))
    assert 4 <= res.usage.completion_tokens <= 5
    res = sdk.chat.complete(**_ask(_parts(DATA_URL), max_tokens=0))
    assert res.usage.completion_tokens == 0 and res.choices[0].finish_reason == "length"
    assert res.usage.prompt_tokens > IMAGE_TOKENS


def test_back_to_back_generations(sdk: Mistral) -> None:
    """Regression: min_tokens sends a second request right after the first ends, and llama-server closes each
    connection just after a streamed response; the request that met the closing connection used to be a 500."""
    for _ in range(10):
        res = sdk.chat.complete(**_ask(_parts(DATA_URL), min_tokens=2, max_tokens=3))
        assert 2 <= res.usage.completion_tokens <= 3


def test_in_process_vision_model(sdk: Mistral) -> None:
    res = sdk.chat.complete(**_ask(_parts(DATA_URL), model=IN_PROCESS))
    text = sdk.chat.complete(**_ask(_parts(), model=IN_PROCESS))
    assert res.choices[0].message.content and res.usage.prompt_tokens - text.usage.prompt_tokens >= IMAGE_TOKENS


def test_text_only_stand_in_refuses_images(stack: tuple[LiveServer, str]) -> None:
    r = _post(stack, _ask(_parts(DATA_URL), model=TEXT_ONLY))
    assert r.status_code == 400
    assert r.json()["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and r.json()["param"] == "messages"
    assert "vision" in r.json()["message"]


def test_undecodable_image_and_overflow_are_400s(stack: tuple[LiveServer, str], ffmpeg_trap: Path) -> None:
    broken = IMAGE[:40] + b"\x00" * 40  # a valid PNG header, then garbage: only llama.cpp's decoder finds out
    url = "data:image/png;base64," + base64.b64encode(broken).decode()
    for model in (VISION, IN_PROCESS):
        r = _post(stack, _ask(_parts(url), model=model))
        assert r.status_code == 400 and r.json()["code"] == "INVALID_IMAGE", r.text
    assert not ffmpeg_trap.exists()  # llama.cpp's fallback to video decoding found no ffprobe to pipe them into
    r = _post(stack, _ask(_parts(DATA_URL), max_tokens=480))
    assert r.status_code == 400 and r.json()["code"] == "CONTEXT_LENGTH_EXCEEDED", r.text
    assert "images included" in r.json()["message"]
    assert _post(stack, _ask(_parts(DATA_URL))).status_code == 200  # the model still serves


def test_models_list_vision(sdk: Mistral) -> None:
    cards = {m.id: m for m in sdk.models.list().data or []}
    assert cards[VISION].capabilities.vision is True
    assert cards[TEXT_ONLY].capabilities.vision is False


def test_lowcode_dialect_with_an_image(stack: tuple[LiveServer, str]) -> None:
    server, token = stack
    r = httpx.post(f"{server.base_url}/mistralai/v1/chat/completions", params={"api_token": token},
                   json=_ask(_parts(DATA_URL)), timeout=120)
    assert r.status_code == 200 and r.json()["data"]["usage"]["prompt_tokens"] > IMAGE_TOKENS
    r = httpx.post(f"{server.base_url}/mistralai/v1/chat/completions", params={"api_token": token},
                   json=_ask(_parts(DATA_URL), model=TEXT_ONLY), timeout=120)
    assert r.status_code == 400 and "vision" in r.json()["data"]["error"]["message"]


def test_the_image_reaches_the_model(sdk: Mistral) -> None:
    """Same text, greedy decoding, images of different colours: the answers differ only through the image."""
    answers = {}
    for name, rgb in {"red": (220, 20, 20), "blue": (20, 20, 220), "grey": (128, 128, 128)}.items():
        url = "data:image/png;base64," + base64.b64encode(png(40, 30, rgb)).decode()
        answers[name] = sdk.chat.complete(**_ask(_parts(url), max_tokens=12)).choices[0].message.content
    assert len(set(answers.values())) > 1, answers
