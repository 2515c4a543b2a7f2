"""config: defaults, ``MISTRAL_GATEWAY_`` environment, TOML file, and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mistral_gateway.config import MB, ModelEntry, Settings, default_models, load_settings


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.port == 8080
    assert s.data_dir == Path(".mistral-gateway")
    assert s.database_url is None
    assert s.public_base_url is None
    assert s.signing_secret is None
    assert s.max_upload_bytes == 512 * MB
    assert s.max_json_body_bytes == 32 * MB
    assert s.signed_url_default_hours == 24
    assert s.signed_url_max_hours == 168
    assert s.bootstrap_dev_token is True
    assert s.lowcode_old_format is True
    assert s.lowcode_new_format is True
    assert s.token_cache_size == 10_000
    assert s.token_cache_seconds == 30.0
    assert s.models_cache_seconds == 5.0
    assert s.config_file is None
    assert [m.id for m in s.models] == [m.id for m in default_models()]


def test_default_models_catalog_shape() -> None:
    models = default_models()
    ids = [m.id for m in models]
    assert ids == ["qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct", "all-minilm-l6-v2",
                   "moderation-minilm-l6-v2", "whisper-base",
                   "rapidocr-pp-ocrv6"]
    names = [n for m in models for n in (m.id, *m.aliases)]
    assert len(names) == len(set(names)), "a model name is declared twice"
    assert {"mistral-small-latest", "codestral-latest", "mistral-embed", "ministral-8b-latest"} <= set(names)
    embed = models[2]
    assert embed.engine == "sentence-transformers"
    assert embed.capabilities == []
    moderation = models[3]
    assert (moderation.engine, moderation.encoder, moderation.head) == ("classifier", embed.id, "moderation")
    assert {"mistral-moderation-latest", "mistral-moderation-2411"} <= set(moderation.aliases)
    whisper = models[4]
    assert (whisper.engine, whisper.asset, whisper.parallel) == ("faster-whisper", "whisper-base", 1)
    assert {"voxtral-mini-latest", "voxtral-small-latest"} <= set(whisper.aliases)
    assert set(whisper.capabilities) == {"audio_transcription", "audio", "completion_chat"}  # chat: a cascade
    ocr = models[5]
    assert (ocr.engine, ocr.capabilities, ocr.asset, ocr.path) == ("rapidocr", ["ocr"], None, None)  # no weights
    assert {"mistral-ocr-latest", "mistral-ocr-2505", "mistral-ocr-2512"} <= set(ocr.aliases)


def test_model_entry_defaults() -> None:
    entry = ModelEntry(id="m")
    assert entry.aliases == []
    assert entry.engine == "llama.cpp"
    assert entry.capabilities == ["completion_chat"]
    assert entry.max_context_length == 32768
    assert entry.owned_by == "mistral-gateway"


def test_sqlite_url_and_blob_dir_derive_from_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    assert s.sqlalchemy_url == f"sqlite:///{(tmp_path / 'd' / 'gateway.db').resolve()}"
    assert s.blob_dir == tmp_path / "d" / "blobs"
    s2 = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@h/db")
    assert s2.sqlalchemy_url == "postgresql+psycopg://u@h/db"


def test_data_dir_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings(data_dir=Path("~/gw")).data_dir == tmp_path / "gw"


def test_env_prefix_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MISTRAL_GATEWAY_PORT", "9123")
    monkeypatch.setenv("MISTRAL_GATEWAY_HOST", "192.0.2.7")
    monkeypatch.setenv("MISTRAL_GATEWAY_DATA_DIR", str(tmp_path / "envdir"))
    monkeypatch.setenv("MISTRAL_GATEWAY_LOWCODE_OLD_FORMAT", "false")
    monkeypatch.setenv("MISTRAL_GATEWAY_MAX_UPLOAD_BYTES", "1024")
    monkeypatch.setenv("PORT", "1")  # unprefixed variables are not ours
    s = Settings()
    assert s.port == 9123
    assert s.host == "192.0.2.7"
    assert s.data_dir == tmp_path / "envdir"
    assert s.lowcode_old_format is False
    assert s.max_upload_bytes == 1024


def test_env_models_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_GATEWAY_MODELS", '[{"id": "tiny", "aliases": ["mistral-tiny"]}]')
    s = Settings()
    assert [(m.id, m.aliases) for m in s.models] == [("tiny", ["mistral-tiny"])]


def test_invalid_env_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_GATEWAY_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()


def test_toml_file_via_argument(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f"""
port = 7001
data_dir = "{tmp_path / 'from-file'}"
signed_url_max_hours = 12
lowcode_new_format = false
""")
    s = load_settings(cfg)
    assert s.port == 7001
    assert s.data_dir == tmp_path / "from-file"
    assert s.data_dir.is_dir(), "load_settings creates the data dir"
    assert s.signed_url_max_hours == 12
    assert s.lowcode_new_format is False
    assert s.config_file == cfg


def test_toml_file_via_env_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f'port = 7002\ndata_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("MISTRAL_GATEWAY_CONFIG", str(cfg))
    s = load_settings()
    assert s.port == 7002
    assert s.config_file == cfg


def test_explicit_config_file_beats_env_config_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_cfg = write_toml(tmp_path / "env.toml", f'port = 1111\ndata_dir = "{tmp_path / "d"}"\n')
    arg_cfg = write_toml(tmp_path / "arg.toml", f'port = 2222\ndata_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("MISTRAL_GATEWAY_CONFIG", str(env_cfg))
    assert load_settings(arg_cfg).port == 2222


def test_env_beats_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f'port = 7003\nhost = "10.0.0.1"\ndata_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("MISTRAL_GATEWAY_PORT", "7004")
    s = load_settings(cfg)
    assert s.port == 7004  # from the environment
    assert s.host == "10.0.0.1"  # the file still supplies what the environment does not


def test_lowercase_env_beats_file_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pydantic-settings reads environment names case-insensitively; the file must not override them."""
    cfg = write_toml(tmp_path / "gw.toml", f'port = 7003\ndata_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("mistral_gateway_port", "7010")
    assert Settings().port == 7010
    assert load_settings(cfg).port == 7010


def test_env_beats_file_for_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f'data_dir = "{tmp_path / "d"}"\n[[models]]\nid = "from-file"\n')
    monkeypatch.setenv("MISTRAL_GATEWAY_MODELS", '[{"id": "from-env"}]')
    assert [m.id for m in load_settings(cfg).models] == ["from-env"]


def test_explicit_overrides_beat_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f'port = 7005\ndata_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("MISTRAL_GATEWAY_PORT", "7006")
    s = load_settings(cfg, port=7007)
    assert s.port == 7007


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MISTRAL_GATEWAY_PORT", "7008")
    s = load_settings(port=None, data_dir=tmp_path / "d")
    assert s.port == 7008


def test_models_from_toml(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f"""
data_dir = "{tmp_path / 'd'}"

[[models]]
id = "local-chat"
aliases = ["mistral-small-latest", "mistral-large-latest"]
path = "/models/chat.gguf"
max_context_length = 4096
capabilities = ["completion_chat", "function_calling"]
default_model_temperature = 0.7

[[models]]
id = "local-embed"
engine = "sentence-transformers"
aliases = ["mistral-embed"]
capabilities = []
""")
    s = load_settings(cfg)
    assert [m.id for m in s.models] == ["local-chat", "local-embed"]
    chat, embed = s.models
    assert chat.aliases == ["mistral-small-latest", "mistral-large-latest"]
    assert chat.path == "/models/chat.gguf"
    assert chat.max_context_length == 4096
    assert chat.capabilities == ["completion_chat", "function_calling"]
    assert chat.default_model_temperature == 0.7
    assert chat.engine == "llama.cpp"
    assert embed.engine == "sentence-transformers"
    assert embed.capabilities == []


def test_missing_config_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")


def test_malformed_toml_raises(tmp_path: Path) -> None:
    import tomllib

    cfg = write_toml(tmp_path / "bad.toml", "port = = 1\n")
    with pytest.raises(tomllib.TOMLDecodeError):
        load_settings(cfg)


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f'data_dir = "{tmp_path / "d"}"\nsomething_else = 1\n')
    s = load_settings(cfg)
    assert not hasattr(s, "something_else")


REDIS_URL = "redis://:s3cret-pw@127.0.0.1:6379/0"


def test_redis_url_is_accepted_and_its_password_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = write_toml(tmp_path / "gw.toml", f'data_dir = "{tmp_path / "d"}"\nredis_url = "{REDIS_URL}"\n'
                                           'redis_failure_mode = "open"\n')
    settings = load_settings(cfg)
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == REDIS_URL
    assert (settings.redis_failure_mode, settings.redis_key_prefix) == ("open", "mistral-gateway:")
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings)
    assert "s3cret-pw" not in settings.model_dump_json()
    monkeypatch.setenv("MISTRAL_GATEWAY_REDIS_URL", REDIS_URL)
    assert load_settings(None, data_dir=str(tmp_path / "d")).redis_url is not None
    monkeypatch.setenv("MISTRAL_GATEWAY_REDIS_URL", "")  # empty: unset
    assert load_settings(None, data_dir=str(tmp_path / "d")).redis_url is None
    from mistral_gateway.storage.redis_conn import describe

    assert describe(REDIS_URL) == "redis://127.0.0.1:6379/0"


def test_a_bad_redis_setting_is_refused_without_echoing_it(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import pydantic

    from mistral_gateway.cli import main

    with pytest.raises(pydantic.ValidationError) as refused:
        Settings(data_dir=tmp_path, redis_url="http://:s3cret-pw@host:6379")
    assert "s3cret-pw" not in str(refused.value) and "redis://" in str(refused.value)
    with pytest.raises(pydantic.ValidationError, match="redis_failure_mode"):
        Settings(data_dir=tmp_path, redis_failure_mode="sometimes")
    cfg = write_toml(tmp_path / "gw.toml", 'redis_url = "http://:s3cret-pw@127.0.0.1:6379/0"\n')
    assert main(["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("configuration error: redis_url") and "Traceback" not in err and "s3cret" not in err
