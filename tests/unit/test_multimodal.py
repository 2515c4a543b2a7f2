"""Vision pieces without a model: projector configuration, media markers in rendered text, the prompt object sent
to llama.cpp, and its stream chunks read back (prompt size checked on the first one, refusals as 400s)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from mistral_gateway.config import ModelEntry, RouteTarget, Settings, load_settings
from mistral_gateway.engines.base import ChatMessage, ContextOverflow, Delta, EngineError, ImageInput, InvalidInput
from mistral_gateway.engines.multimodal import MediaPrompt, media_chunk, media_prompt, place_markers
from mistral_gateway.errors import BadRequest
from mistral_gateway.services.completions import engine_errors

# -- configuration ----------------------------------------------------------------------------------------------


def test_a_projector_gives_the_vision_capability() -> None:
    entry = ModelEntry(id="v", path="m.gguf", mmproj="mmproj.gguf")
    assert entry.capabilities == ["completion_chat", "vision"] and entry.has_mmproj
    assert ModelEntry(id="w", asset="a", mmproj_asset="p").has_mmproj


@pytest.mark.parametrize(("fields", "problem"), [
    ({"mmproj": "a.gguf", "mmproj_asset": "b"}, "not both"),
    ({"mmproj": "a.gguf", "engine": "sentence-transformers"}, "needs engine 'llama.cpp'"),
    ({"capabilities": ["completion_chat", "vision"]}, "needs 'mmproj'"),
])
def test_projector_misconfigurations(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ModelEntry(id="v", **fields)  # type: ignore[arg-type]


def test_an_upstream_only_model_may_declare_vision() -> None:
    entry = ModelEntry(id="pixtral", capabilities=["completion_chat", "vision"], routes=[RouteTarget(upstream="x")])
    assert "vision" in entry.capabilities


def test_image_settings_have_ranges_and_load_from_toml(tmp_path: Path) -> None:
    assert Settings().allow_private_image_urls is False and Settings().images_per_request == 8
    for bad in ({"images_per_request": 0}, {"image_max_bytes": 10**12}, {"image_fetch_timeout": 0},
                {"image_max_redirects": 99}, {"image_max_pixels": 1}):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]
    config = tmp_path / "c.toml"
    config.write_text('allow_private_image_urls = true\n[[models]]\nid = "v"\npath = "m.gguf"\nmmproj = "p.gguf"\n',
                      encoding="utf-8")
    settings = load_settings(config, data_dir=tmp_path / "d")
    assert settings.allow_private_image_urls and settings.models[0].capabilities[-1] == "vision"


# -- markers and prompts ----------------------------------------------------------------------------------------

M = "<__media_test__>"
RED, BLUE = ImageInput(b"red", 0), ImageInput(b"blue", 5)


def test_markers_go_where_the_images_were() -> None:
    messages = [ChatMessage("system", "be brief"), ChatMessage("user", "hello world", images=(BLUE, RED))]
    placed = place_markers(messages, M)
    assert placed[0] is messages[0]
    assert placed[1].content == f"{M}hello{M} world" and placed[1].images == ()
    clamped = place_markers([ChatMessage("user", "ab", images=(ImageInput(b"x", 99),))], M)
    assert clamped[0].content == f"ab{M}"  # an offset past the end stays at the end


def test_a_media_prompt_keeps_its_images_when_extended() -> None:
    prompt = MediaPrompt(f"<user>{M}<assistant>", [RED, BLUE])
    longer = prompt + "Thinking done."
    assert isinstance(longer, MediaPrompt) and longer.images == (RED, BLUE) and longer.endswith("done.")
    assert media_prompt(longer) == {"prompt_string": str(longer), "multimodal_data": [
        base64.b64encode(b"red").decode(), base64.b64encode(b"blue").decode()]}
    assert media_prompt("plain text") == {"prompt_string": "plain text", "multimodal_data": []}


# -- llama.cpp's /completion stream -----------------------------------------------------------------------------

def test_chunks_become_deltas_with_the_real_prompt_size() -> None:
    assert media_chunk({"content": "Hi", "stop": False, "tokens_evaluated": 52}, 8, 512, "m") == Delta("Hi")
    last = media_chunk({"content": "", "stop": True, "stop_type": "limit", "tokens_evaluated": 52,
                        "tokens_predicted": 8}, 8, 512, "m")
    assert last == Delta("", "length", 52, 8)
    assert media_chunk({"content": "", "stop": True, "stop_type": "eos", "tokens_evaluated": 52,
                        "tokens_predicted": 3}, None, 512, "m").finish_reason == "stop"


def test_prompt_with_images_plus_max_tokens_must_fit() -> None:
    with pytest.raises(ContextOverflow, match="images included") as info:
        media_chunk({"content": "Hi", "stop": False, "tokens_evaluated": 500}, 20, 512, "m")
    assert info.value.prompt_tokens == 500 and info.value.context_length == 512
    assert engine_errors(info.value).code == "CONTEXT_LENGTH_EXCEEDED"


def test_llama_cpp_refusals() -> None:
    refusal = {"error": {"code": 400, "message": "Failed to load image or audio file", "type": "invalid_request_error"}}
    with pytest.raises(InvalidInput) as info:
        media_chunk(refusal, 8, 512, "m")
    mapped = engine_errors(info.value)
    assert isinstance(mapped, BadRequest) and mapped.code == "INVALID_IMAGE" and mapped.param == "messages"
    with pytest.raises(ContextOverflow):
        media_chunk({"error": {"type": "exceed_context_size_error", "message": "too long", "n_ctx": 512}}, 8, 512, "m")
    for error in ({"code": 500, "message": "boom", "type": "server_error"},
                  {"code": 400, "message": "Failed to parse grammar", "type": "invalid_request_error"}):
        with pytest.raises(EngineError) as other:
            media_chunk({"error": error}, 8, 512, "m")
        assert not isinstance(other.value, InvalidInput)


def test_a_missing_projector_is_a_clear_load_error(tmp_path: Path) -> None:
    from mistral_gateway.engines.assets import AssetError
    from mistral_gateway.engines.llama import load

    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    settings = Settings(data_dir=tmp_path / "d")
    with pytest.raises(EngineError, match=r"multimodal projector .*nope\.gguf does not exist"):
        load(ModelEntry(id="v", path=str(weights), mmproj=str(tmp_path / "nope.gguf")), weights, settings)
    with pytest.raises(AssetError, match="no-such-projector"):
        load(ModelEntry(id="v", path=str(weights), mmproj_asset="no-such-projector"), weights, settings)
