"""Transcription over HTTP in both dialects on the fake speech engine: each input form (upload, file_id, file_url),
whole and streamed (named SSE events, no [DONE]), bad inputs in each dialect's error shape, limits, file isolation
between workspaces, /v1/models, a batch of transcriptions, and audio in chat (the cascade). The real engine:
tests/e2e/test_transcription_sdk.py."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from audio_support import SPEECH_MODEL, tone_wav, with_fake_speech
from batch_support import wait_done
from dialect_support import data as unwrap
from dialect_support import error
from mistral_gateway.config import Settings, default_models
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.audio import MAX_CONTEXT_BIAS
from mistral_gateway.services.container import Services, build_services
from url_server import UrlServer

DIALECTS = ("native", "lowcode")
PATH = "/v1/audio/transcriptions"
WAV = tone_wav([True, True, True, True, False, True])  # fake words at seconds 0-3 and 5


class Env:
    def __init__(self, client: TestClient, services: Services, token: str, other: str) -> None:
        self.client, self.services, self.token, self.other = client, services, token, other

    def _auth(self, dialect: str, token: str | None) -> dict[str, Any]:
        token = token or self.token
        if dialect == "native":
            return {"headers": {"Authorization": f"Bearer {token}"}}
        return {"params": {"api_token": token}}

    def url(self, dialect: str, path: str = PATH) -> str:
        return path if dialect == "native" else "/mistralai" + path

    def transcribe(self, dialect: str, fields: dict[str, Any], audio: bytes | None = WAV,
                   token: str | None = None) -> httpx.Response:
        files = {"file": ("speech.wav", audio, "audio/wav")} if audio is not None else None
        form = {"model": SPEECH_MODEL, **fields}
        return self.client.post(self.url(dialect), data=form, files=files, **self._auth(dialect, token))

    def upload(self, dialect: str, data: bytes, purpose: str = "audio", token: str | None = None) -> str:
        r = self.client.post(self.url(dialect, "/v1/files"), data={"purpose": purpose},
                             files={"file": ("speech.wav", data, "audio/wav")}, **self._auth(dialect, token))
        return str(unwrap(r, dialect)["id"])

    def post_json(self, dialect: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(self.url(dialect, path), json=body, **self._auth(dialect, None))


def settings_for(data_dir: Any, **extra: Any) -> Settings:
    models = with_fake_speech([m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()])
    return Settings(data_dir=data_dir, bootstrap_dev_token=False, models=models, **extra)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    settings = settings_for(tmp_path_factory.mktemp("transcribe") / "data", audio_max_seconds=30.0,
                            audio_max_bytes=2 * 1024 * 1024)
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    other, _ = services.tokens.create("o", workspace="elsewhere")
    with TestClient(create_app(services=services)) as client:
        yield Env(client, services, token, other)
    services.close()


def events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event; every event must have both lines."""
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    out = []
    for block in r.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(lines) == {"event", "data"}, block
        out.append((lines["event"], httpx.Response(200, content=lines["data"]).json()))
    return out


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_upload_is_transcribed(env: Env, dialect: str) -> None:
    out = unwrap(env.transcribe(dialect, {}), dialect)
    assert out["text"] == "alpha bravo charlie delta foxtrot"
    assert out["model"] == SPEECH_MODEL and out["language"] == "en"
    assert out["segments"] == []  # only when timestamp_granularities asks for them (Mistral's example)
    assert out["usage"]["prompt_audio_seconds"] == 6


@pytest.mark.parametrize("dialect", DIALECTS)
def test_segments_and_words(env: Env, dialect: str) -> None:
    out = unwrap(env.transcribe(dialect, {"timestamp_granularities": ["segment"]}), dialect)
    assert [(s["type"], s["text"], s["start"], s["end"]) for s in out["segments"]] == [
        ("transcription_segment", "alpha bravo charlie", 0.0, 3.0), ("transcription_segment", "delta foxtrot", 3.0,
                                                                     6.0)]
    words = unwrap(env.transcribe(dialect, {"timestamp_granularities": ["word"]}), dialect)["segments"]
    assert [(w["text"], w["start"]) for w in words] == [("alpha", 0.0), ("bravo", 1.0), ("charlie", 2.0),
                                                        ("delta", 3.0), ("foxtrot", 5.0)]


def test_options_reach_the_engine(env: Env) -> None:
    unwrap(env.transcribe("native", {"language": "fr", "temperature": "0.4",
                                     "context_bias": ["Voxtral", "Mistral_AI"]}), "native")
    engine = asyncio.run(env.services.engines.speech(env.services.models.catalog.resolve(SPEECH_MODEL)))
    options = engine.calls[-1][1]
    assert (options.language, options.temperature, options.prompt) == ("fr", 0.4, "Voxtral, Mistral AI")
    assert not options.word_timestamps


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_stream_names_every_event_and_ends_with_done(env: Env, dialect: str) -> None:
    got = events(env.transcribe(dialect, {"stream": "true", "timestamp_granularities": ["segment"]}))
    names = [name for name, _ in got]
    assert names == ["transcription.language", "transcription.text.delta", "transcription.segment",
                     "transcription.text.delta", "transcription.segment", "transcription.done"]
    assert all(data["type"] == name for name, data in got)
    assert got[0][1]["audio_language"] == "en"
    assert "".join(d["text"] for n, d in got if n == "transcription.text.delta") == "alpha bravo charlie delta foxtrot"
    done = got[-1][1]
    assert done["text"] == "alpha bravo charlie delta foxtrot" and len(done["segments"]) == 2
    assert done["usage"]["prompt_audio_seconds"] == 6


def test_usage_records_each_operation(tmp_path: Path) -> None:
    services = build_services(settings_for(tmp_path / "data"))
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        env = Env(client, services, token, token)
        assert env.transcribe("native", {}).status_code == 200
        assert events(env.transcribe("native", {"stream": "true"}))[-1][0] == "transcription.done"
    records, _ = services.usage.list()
    services.close()
    # the 6 s of audio are the prompt (budgets count audio by the second, as realtime sessions do); no completion
    assert sorted((row.operation, row.model, row.status, row.prompt_tokens, row.completion_tokens)
                  for row in records) == [("create_streaming_transcription", SPEECH_MODEL, 200, 6, 0),
                                          ("create_transcription", SPEECH_MODEL, 200, 6, 0)]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_file_id_of_the_workspace(env: Env, dialect: str) -> None:
    file_id = env.upload(dialect, tone_wav([True, True]))
    out = unwrap(env.transcribe(dialect, {"file_id": file_id}, audio=None), dialect)
    assert out["text"] == "alpha bravo"
    err = error(env.transcribe(dialect, {"file_id": file_id}, audio=None, token=env.other), dialect, 404)
    assert file_id in err["message"]
    batch_file = env.upload(dialect, tone_wav([True]), purpose="batch")
    err = error(env.transcribe(dialect, {"file_id": batch_file}, audio=None), dialect, 400)
    assert "purpose 'audio'" in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_exactly_one_audio_source(env: Env, dialect: str) -> None:
    err = error(env.transcribe(dialect, {}, audio=None), dialect, 400)
    assert "exactly one of file, file_url and file_id" in err["message"]
    err = error(env.transcribe(dialect, {"file_id": "3b2c6a1e-4d4f-4a57-9c1e-2a8f5f0d9e11"}), dialect, 400)
    assert "got file, file_id" in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("fields", "where"), [
    ({"language": "english"}, "language"),
    ({"temperature": "7"}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"context_bias": ["two words"]}, "context_bias"),
    ({"context_bias": ["a,b"]}, "context_bias"),
    ({"context_bias": [f"w{i}" for i in range(MAX_CONTEXT_BIAS + 1)]}, "context_bias"),
    ({"timestamp_granularities": ["sentence"]}, "timestamp_granularities"),
    ({"model": ""}, "model"),
])
def test_invalid_fields_are_422(env: Env, dialect: str, fields: dict[str, Any], where: str) -> None:
    err = error(env.transcribe(dialect, fields), dialect, 422)
    detail = err["detail"]
    assert detail[0]["loc"][:2] == ["body", where], detail


@pytest.mark.parametrize("dialect", DIALECTS)
def test_refusals(env: Env, dialect: str) -> None:
    err = error(env.transcribe(dialect, {"diarize": "true"}), dialect, 400)
    assert "diarization" in err["message"] and err["code"] == "UNSUPPORTED_FEATURE"
    err = error(env.transcribe(dialect, {"model": "mistral-small-latest"}), dialect, 400)
    assert "'audio_transcription'" in err["message"] and err["code"] == "UNSUPPORTED_MODEL_CAPABILITY"
    err = error(env.transcribe(dialect, {"model": "no-such-model"}), dialect, 404)
    assert err["code"] == "MODEL_NOT_FOUND"
    err = error(env.transcribe(dialect, {}, audio=b"RIFF\x00\x00not a wave file at all"), dialect, 400)
    assert err["code"] == "INVALID_AUDIO"
    err = error(env.transcribe(dialect, {}, audio=b""), dialect, 400)
    assert err["code"] == "INVALID_AUDIO"
    err = error(env.transcribe(dialect, {"stream": "maybe"}), dialect, 422)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_limits(env: Env, dialect: str) -> None:
    err = error(env.transcribe(dialect, {}, audio=tone_wav([False] * 31)), dialect, 413)
    assert "limit of 30 seconds" in err["message"] and err["code"] == "AUDIO_TOO_LONG"
    err = error(env.transcribe(dialect, {}, audio=b"\0" * (2 * 1024 * 1024 + 1)), dialect, 413)
    assert str(2 * 1024 * 1024) in err["message"]
    # a stream's errors before its first event are plain HTTP errors too
    err = error(env.transcribe(dialect, {"stream": "true"}, audio=tone_wav([False] * 31)), dialect, 413)
    assert err["code"] == "AUDIO_TOO_LONG"


def test_the_file_part_may_come_without_a_filename(env: Env) -> None:
    r = env.client.post(PATH, headers={"Authorization": f"Bearer {env.token}"},
                        files={"model": (None, SPEECH_MODEL), "file": (None, tone_wav([True] * 3))})
    assert r.status_code == 200 and r.json()["text"] == "alpha bravo charlie", r.text


def test_models_list_the_speech_model(env: Env) -> None:
    card = unwrap(env.client.get(f"/v1/models/{SPEECH_MODEL}", headers={"Authorization": f"Bearer {env.token}"}),
                  "native")
    caps = card["capabilities"]
    assert caps["audio_transcription"] and caps["audio"] and caps["completion_chat"]


def test_a_batch_of_transcriptions(env: Env) -> None:
    file_id = env.upload("native", tone_wav([True, False, True]))
    requests = [{"custom_id": "ok", "body": {"file_id": file_id, "timestamp_granularities": ["segment"]}},
                {"custom_id": "none", "body": {}},
                {"custom_id": "diarize", "body": {"file_id": file_id, "diarize": True}}]
    headers = {"Authorization": f"Bearer {env.token}"}
    r = env.client.post("/v1/batch/jobs", headers=headers, json={"endpoint": PATH, "model": SPEECH_MODEL,
                                                                 "requests": requests})
    assert r.status_code == 200, r.text
    job = wait_done(lambda i: env.client.get(f"/v1/batch/jobs/{i}", headers=headers,
                                             params={"inline": "true"}).json(), r.json()["id"])
    by_id = {o["custom_id"]: o for o in job["outputs"]}
    ok = by_id["ok"]["response"]
    assert ok["status_code"] == 200 and ok["body"]["text"] == "alpha charlie", ok
    assert [(s["start"], s["end"]) for s in ok["body"]["segments"]] == [(0.0, 3.0)]
    assert by_id["none"]["response"]["status_code"] == 400
    assert by_id["diarize"]["response"]["status_code"] == 400


def test_a_batch_for_a_chat_model_is_refused(env: Env) -> None:
    r = env.client.post("/v1/batch/jobs", headers={"Authorization": f"Bearer {env.token}"}, json={
        "endpoint": PATH, "model": "mistral-small-latest", "requests": [{"body": {"file_id": "x"}}]})
    assert r.status_code == 400 and "audio_transcription" in r.json()["message"], r.text


# -- audio in chat --------------------------------------------------------------------------------------------


def chat_body(model: str, audio: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is said?"}, {"type": "input_audio", "input_audio": audio}]}], **extra}


async def _chat_engine(env: Env) -> Any:
    entry = env.services.models.catalog.resolve(env.services.settings.audio_chat_model)
    assert entry is not None
    return await env.services.engines.text(entry)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_audio_in_chat_is_transcribed_for_the_chat_model(env: Env, dialect: str) -> None:
    audio = base64.b64encode(tone_wav([True, True, True])).decode()
    out = unwrap(env.post_json(dialect, "/v1/chat/completions", chat_body(SPEECH_MODEL, audio)), dialect)
    assert out["model"] == SPEECH_MODEL and out["choices"][0]["message"]["content"]
    engine = asyncio.run(_chat_engine(env))
    assert 'What is said?\nAudio transcript: "alpha bravo charlie"' in engine.prompts[-1]
    r = env.post_json(dialect, "/v1/chat/completions", chat_body(SPEECH_MODEL, "data:audio/wav;base64," + audio,
                                                                 stream=True))
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]"), r.text
    assert 'Audio transcript: "alpha bravo charlie"' in engine.prompts[-1]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_audio_in_chat_refusals(env: Env, dialect: str) -> None:
    audio = base64.b64encode(tone_wav([True])).decode()
    err = error(env.post_json(dialect, "/v1/chat/completions", chat_body("mistral-small-latest", audio)), dialect,
                400)
    assert "capability 'audio'" in err["message"]
    err = error(env.post_json(dialect, "/v1/chat/completions", chat_body(SPEECH_MODEL, "not base64!")), dialect, 400)
    assert "base64" in err["message"]
    err = error(env.post_json(dialect, "/v1/chat/completions", chat_body(SPEECH_MODEL, "QUJD")), dialect, 400)
    assert err["code"] == "INVALID_AUDIO"
    big = base64.b64encode(b"\0" * (2 * 1024 * 1024 + 3)).decode()
    err = error(env.post_json(dialect, "/v1/chat/completions", chat_body(SPEECH_MODEL, big)), dialect, 413)
    assert "audio_max_bytes" in err["message"]


def test_text_only_chat_with_a_speech_model_is_answered_by_the_chat_model(env: Env) -> None:
    body = {"model": SPEECH_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hello there"}]}
    out = unwrap(env.post_json("native", "/v1/chat/completions", body), "native")
    assert out["model"] == SPEECH_MODEL and out["choices"][0]["message"]["content"]


# -- URLs: file_url, and input_audio given as a URL -----------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_loopback_file_url_is_refused(env: Env, dialect: str) -> None:
    with UrlServer({"/a.wav": (200, "audio/wav", WAV)}) as server:
        err = error(env.transcribe(dialect, {"file_url": server.url("/a.wav")}, audio=None), dialect, 400)
    assert "file_url is refused" in err["message"] and "private, loopback" in err["message"]
    assert err["code"] == "INVALID_FILE_URL"
    assert not server.seen  # refused before any connection


def test_file_url_through_the_allow_list(tmp_path: Path) -> None:
    routes = {"/a.wav": (200, "audio/wav", WAV), "/page": (200, "text/html", b"<html>not audio</html>"),
              "/bytes": (200, "application/octet-stream", WAV)}
    with UrlServer(routes) as server:
        services = build_services(settings_for(tmp_path / "data", fetch_allow=[f"127.0.0.1:{server.port}"]))
        token, _ = services.tokens.create("t")
        with TestClient(create_app(services=services)) as client:
            env = Env(client, services, token, token)
            for dialect in DIALECTS:
                out = unwrap(env.transcribe(dialect, {"file_url": server.url("/a.wav")}, audio=None), dialect)
                assert out["text"] == "alpha bravo charlie delta foxtrot"
                assert unwrap(env.transcribe(dialect, {"file_url": server.url("/bytes")}, audio=None), dialect)
                err = error(env.transcribe(dialect, {"file_url": server.url("/page")}, audio=None), dialect, 400)
                assert "file_url" in err["message"]
            streamed = events(env.transcribe("native", {"file_url": server.url("/a.wav"), "stream": "true"},
                                             audio=None))
            assert streamed[-1][1]["text"] == "alpha bravo charlie delta foxtrot"
            r = env.post_json("native", "/v1/chat/completions", chat_body(SPEECH_MODEL, server.url("/a.wav")))
            assert r.status_code == 200, r.text
        services.close()


def test_a_signed_url_of_our_own_file_is_read_from_storage(env: Env) -> None:
    """The SDK's chat_streaming example sends the signed URL of an uploaded file as input_audio."""
    file_id = env.upload("native", tone_wav([True, True]))
    headers = {"Authorization": f"Bearer {env.token}"}
    signed = env.client.get(f"/v1/files/{file_id}/url", headers=headers).json()["url"]
    assert signed.startswith("http://testserver/")  # not fetchable: read from storage when its signature holds
    out = unwrap(env.transcribe("native", {"file_url": signed}, audio=None), "native")
    assert out["text"] == "alpha bravo"
    r = env.post_json("native", "/v1/chat/completions", chat_body(SPEECH_MODEL, signed))
    assert r.status_code == 200, r.text
    forged = signed.replace("signature=", "signature=0")
    err = error(env.transcribe("native", {"file_url": forged}, audio=None), "native", 400)
    assert err["code"] == "INVALID_FILE_URL"  # then it is a URL like any other: testserver does not resolve


def test_scope_and_the_docs_x_api_key_header(env: Env) -> None:
    """Mistral's transcription docs authenticate with ``x-api-key``; a token without the ``audio`` scope is 403."""
    r = env.client.post(PATH, headers={"x-api-key": env.token}, data={"model": SPEECH_MODEL},
                        files={"file": ("a.wav", WAV, "audio/wav")})
    assert r.status_code == 200 and r.json()["text"], r.text
    files_only, _ = env.services.tokens.create("files-only", scopes=["files"])
    err = error(env.transcribe("native", {}, token=files_only), "native", 403)
    assert "'audio' scope" in err["message"]
