"""Model ids: every current, dated and legacy Mistral id resolves to its family's stand-in; unknowns do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistral_gateway.config import ModelEntry, ModelFamily, default_model_families, default_models, load_settings
from mistral_gateway.errors import BadRequest, NotFound
from mistral_gateway.protocol.models import CAPABILITY_NAMES
from mistral_gateway.services.completions import resolve_text_model
from mistral_gateway.services.model_ids import MAX_ID_LENGTH, FamilyTable
from mistral_gateway.services.models import ModelCatalog

QWEN, SMOL, MINILM = "qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct", "all-minilm-l6-v2"
MODERATION = "moderation-minilm-l6-v2"
WHISPER = "whisper-base"

# (id, stand-in entry id, reasoning): ids from Mistral's model list, the SDK's examples and docs, and legacy names
KNOWN = [
    ("mistral-tiny", QWEN, False), ("mistral-tiny-2312", QWEN, False), ("mistral-small", QWEN, False),
    ("mistral-small-2409", QWEN, False), ("mistral-small-2503", QWEN, False), ("mistral-small-latest", QWEN, False),
    ("mistral-medium-2505", QWEN, False), ("mistral-medium-2508", QWEN, False), ("mistral-medium-3", QWEN, False),
    ("mistral-medium-3-5", QWEN, True), ("mistral-medium-3.5", QWEN, True), ("mistral-medium-3-5-latest", QWEN, True),
    ("mistral-large-2411", QWEN, False), ("mistral-large-2512", QWEN, False), ("mistral-large-2402", QWEN, False),
    ("mistral-large-3", QWEN, False), ("mistral-large-latest", QWEN, False),
    ("open-mistral-7b", QWEN, False), ("open-mixtral-8x7b", QWEN, False), ("open-mixtral-8x22b-2404", QWEN, False),
    ("open-mistral-nemo", QWEN, False), ("open-mistral-nemo-2407", QWEN, False),
    ("open-codestral-mamba", QWEN, False), ("codestral-mamba-2407", QWEN, False),
    ("codestral-2405", QWEN, False), ("codestral-2501", QWEN, False), ("codestral-2508", QWEN, False),
    ("codestral-2", QWEN, False), ("codestral-latest", QWEN, False),
    ("devstral-small-2505", QWEN, False), ("devstral-small-2507", QWEN, False), ("devstral-medium-2507", QWEN, False),
    ("devstral-2512", QWEN, False), ("labs-devstral-small-2512", QWEN, False),
    ("magistral-medium-latest", QWEN, True), ("magistral-medium-2509", QWEN, True),
    ("magistral-small-2509", QWEN, True), ("magistral-small", QWEN, True),
    ("mistral-saba-latest", QWEN, False), ("mistral-saba-2502", QWEN, False),
    ("pixtral-12b-2409", QWEN, False), ("pixtral-12b", QWEN, False), ("pixtral-large-2411", QWEN, False),
    ("pixtral-large-latest", QWEN, False), ("mistral-large-pixtral-2411", QWEN, False),
    ("ministral-3b-2410", SMOL, False), ("ministral-8b-2410", SMOL, False), ("ministral-14b-2512", SMOL, False),
    ("ministral-3b-latest", SMOL, False), ("ministral-8b-latest", SMOL, False),
    ("mistral-embed", MINILM, False), ("mistral-embed-2312", MINILM, False), ("codestral-embed-2505", MINILM, False),
    ("codestral-embed", MINILM, False),
    ("mistral-moderation-latest", MODERATION, False), ("mistral-moderation-2411", MODERATION, False),
    ("mistral-moderation-2603", MODERATION, False),
    ("voxtral-small-latest", WHISPER, False), ("voxtral-small-24b-2507", WHISPER, False),
    ("voxtral-mini-2507", WHISPER, False), ("voxtral-mini-2602", WHISPER, False),
    ("voxtral-mini-latest", WHISPER, False), ("voxtral-mini-transcribe-2507", WHISPER, False),
    ("voxtral-mini-transcribe-realtime-2602", WHISPER, False),
]
# families with no local engine: they resolve (not 404) to an engine-less stand-in
ENGINELESS = [
    ("mistral-ocr-2505", "ocr"), ("mistral-ocr-2503", "ocr"),
    ("mistral-ocr-latest", "ocr"), ("mistral-document-ai-2505", "ocr"), ("voxtral-tts-latest", "audio"),
    ("voxtral-tts-2603", "audio"),
]
UNKNOWN = [
    "nope", "gpt-4o", "mistral", "mistral-foo-latest", "mistral-7b", "mistral-large-2413",  # month 13
    "mistral-large-24111", "mistral-large-2411-x", "mistral-large-latest-2411", "Mistral-Large-2411",
    "mistral-large--2411", "mistral-large-", "-mistral-large", "mistral-large-2411 ", " mistral-large-2411",
    "mistral_large_2411", "mistral-large-3-5-7", "mistral-large-123", "open-mistral-7b-8b", "ft:open-mistral-7b:abc",
    "mistral-ocr-2503-completion", "mistral-large-2411\n", "mistral-large-2411\x00", "mistral-larg\u0435-2411",
    "codestral-embed-foo", "", "mistral-large-" + "1" * 60, "a-" * 5000 + "b", "(a+)+$" * 100, "mistral-" * 1000,
    "mistral-large-" + "-" * 50_000, "9" * 100_000,
]


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    return ModelCatalog(default_models())


@pytest.mark.parametrize(("name", "stand_in", "reasoning"), KNOWN)
def test_known_ids_resolve_to_their_stand_in(catalog: ModelCatalog, name: str, stand_in: str,
                                             reasoning: bool) -> None:
    entry = catalog.resolve(name)
    assert entry is not None and entry.id == stand_in
    assert catalog.is_reasoning(name) is reasoning
    card = catalog.card(name)
    assert card is not None and card.id == name and card.name == stand_in
    assert card.capabilities.reasoning is reasoning


@pytest.mark.parametrize(("name", "capability"), ENGINELESS)
def test_engineless_families_resolve_and_answer_400_naming_the_capability(catalog: ModelCatalog, name: str,
                                                                         capability: str) -> None:
    entry = catalog.resolve(name)
    assert entry is not None and entry.engine == "none" and capability in entry.capabilities
    assert not entry.served_locally
    for wanted in ("completion_chat", "completion_fim"):
        with pytest.raises(BadRequest) as err:
            resolve_text_model(catalog, name, wanted)
        assert err.value.code == "UNSUPPORTED_MODEL_CAPABILITY"
        assert wanted in err.value.message and capability in err.value.message
    card = catalog.card(name)
    assert card is not None and card.id == name
    assert not any(getattr(card.capabilities, c) for c in CAPABILITY_NAMES)  # nothing works here: none claimed


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_and_hostile_ids_do_not_resolve(catalog: ModelCatalog, name: str) -> None:
    assert catalog.resolve(name) is None
    assert catalog.card(name) is None
    assert catalog.is_reasoning(name) is False
    with pytest.raises(NotFound) as err:
        resolve_text_model(catalog, name, "completion_chat")
    assert err.value.code == "MODEL_NOT_FOUND"
    assert len(err.value.message) < 300  # a huge name is not echoed whole


def test_the_listing_keeps_canonical_names_only(catalog: ModelCatalog) -> None:
    ids = [c.id for c in catalog.cards]
    assert ids == [n for e in default_models() for n in (e.id, *e.aliases)]
    for name in ("mistral-large-2411", "open-mistral-7b", "mistral-moderation-2603"):
        assert catalog.resolve(name) is not None and name not in ids


def test_catalog_names_win_over_family_rules() -> None:
    special = ModelEntry(id="special", engine="fake", aliases=["mistral-large-2411"])
    catalog = ModelCatalog([*default_models(), special])
    assert catalog.resolve("mistral-large-2411") is special
    assert catalog.resolve("mistral-large-2407").id == QWEN  # type: ignore[union-attr]


def test_a_family_follows_its_latest_name_and_sized_latest_names() -> None:
    large = ModelEntry(id="big", engine="fake", aliases=["mistral-large-latest"])
    eight = ModelEntry(id="eight", engine="fake", aliases=["ministral-8b-latest"])
    small = ModelEntry(id="small", engine="fake", aliases=["mistral-small-latest"])
    catalog = ModelCatalog([large, eight, small])
    assert catalog.resolve("mistral-large-2411") is large
    assert catalog.resolve("ministral-8b-2410") is eight
    assert catalog.resolve("ministral-3b-2410") is None  # the default stand-in is not in this catalog
    assert catalog.resolve("open-mistral-7b") is None
    assert catalog.resolve("mistral-small-2409") is small


def test_vision_families_prefer_a_vision_model() -> None:
    text = ModelEntry(id=QWEN, engine="fake")
    vlm = ModelEntry(id="vlm", engine="fake", capabilities=["completion_chat", "vision"])
    assert ModelCatalog([text]).resolve("pixtral-12b-2409") is text  # images then get the vision 400
    with_vision = ModelCatalog([text, vlm])
    assert with_vision.resolve("pixtral-12b-2409") is vlm
    assert with_vision.resolve("pixtral-large-latest") is vlm
    assert with_vision.resolve("mistral-large-2411") is text  # only the vision families move


def test_operator_rows_replace_defaults_and_add_families() -> None:
    entries = [*default_models(), ModelEntry(id="other", engine="fake")]
    catalog = ModelCatalog(entries, overrides=[ModelFamily(prefix="mistral-large", model="other"),
                                               ModelFamily(prefix="acme-chat", model="ministral-3b-latest",
                                                           reasoning=True)])
    assert catalog.resolve("mistral-large-2411").id == "other"  # type: ignore[union-attr]
    assert catalog.resolve("mistral-small-2409").id == QWEN  # type: ignore[union-attr]
    assert catalog.resolve("acme-chat-2601").id == SMOL  # type: ignore[union-attr]
    assert catalog.is_reasoning("acme-chat-latest")
    assert ModelCatalog(default_models(), families=[]).resolve("mistral-large-2411") is None


@pytest.mark.parametrize(("row", "match"), [
    (ModelFamily(prefix="mistral-large", model="missing"), "not in the catalog"),
    (ModelFamily(prefix="mistral-large", model=QWEN, prefer="telepathy"), "unknown capabilities"),
    (ModelFamily(prefix="mistral-ocr", capabilities=["ocr", "telepathy"]), "unknown capabilities"),
])
def test_bad_operator_rows_fail_at_start(row: ModelFamily, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelCatalog(default_models(), overrides=[row])


@pytest.mark.parametrize("prefix", ["", "Mistral", "mistral-", "-x", "a--b", "a b", "x" * 49])
def test_family_prefixes_are_validated(prefix: str) -> None:
    with pytest.raises(ValueError):
        ModelFamily(prefix=prefix, model=QWEN)


def test_a_family_routed_upstream_forwards_the_id_the_caller_sent() -> None:
    routed = ModelEntry(id="mistral-large-latest", engine="none",
                        routes=[{"upstream": "cloud"}, {"upstream": "local", "model": QWEN}])
    catalog = ModelCatalog([ModelEntry(id=QWEN, engine="fake"), routed])
    pinned = catalog.resolve("mistral-large-2411")
    assert pinned is not None and pinned.id == "mistral-large-2411"  # the router sends route.model or entry.id
    assert [(r.upstream, r.model) for r in pinned.routes] == [("cloud", None), ("local", QWEN)]
    assert catalog.resolve("mistral-large-latest") is routed
    card = catalog.card("mistral-large-2411")
    assert card is not None and card.name == "mistral-large-latest" and card.capabilities.completion_chat
    fallback = ModelEntry(id="mistral-small-latest", routes=[{"upstream": "cloud"}, {"upstream": "local"}])
    own = ModelCatalog([fallback]).resolve("mistral-small-2409")
    assert own is not None and [(r.upstream, r.model) for r in own.routes] == [("cloud", None),
                                                                             ("local", "mistral-small-latest")]


def test_engine_none_needs_a_named_local_target() -> None:
    with pytest.raises(ValueError, match="engine 'none'"):
        ModelCatalog([ModelEntry(id="x", engine="none", routes=[{"upstream": "cloud"}, {"upstream": "local"}])])


def test_reasoning_capability_on_an_entry_counts() -> None:
    catalog = ModelCatalog([ModelEntry(id="thinker", engine="fake", capabilities=["completion_chat", "reasoning"])])
    assert catalog.is_reasoning("thinker")
    assert catalog.card("thinker").capabilities.reasoning  # type: ignore[union-attr]


def test_family_cache_is_bounded() -> None:
    catalog = ModelCatalog(default_models(), cache_size=8)
    for i in range(100):
        catalog.resolve(f"mistral-large-{i % 12 + 2401}")
        catalog.resolve(f"nope-{i}")
    assert len(catalog._cache) == 8
    assert catalog.resolve("mistral-large-2411").id == QWEN  # type: ignore[union-attr]
    catalog.resolve("x" * (MAX_ID_LENGTH + 1))
    assert all(len(name) <= MAX_ID_LENGTH for name in catalog._cache)


def test_longest_prefix_wins_and_falls_back() -> None:
    table = FamilyTable(default_model_families())
    match = table.match("voxtral-mini-transcribe-realtime-2602")
    assert match is not None and match.family.prefix == "voxtral-mini-transcribe-realtime"
    match = table.match("ministral-8b-2410")
    assert match is not None and (match.family.prefix, match.size, match.version) == ("ministral", "8b", "2410")
    match = table.match("mistral-medium-3.1")
    assert match is not None and (match.family.prefix, match.version) == ("mistral-medium", "3-1")


def test_toml_model_families(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('model_family_defaults = true\n\n[[model_families]]\nprefix = "mistral-large"\n'
                      'model = "ministral-3b-latest"\n\n[[model_families]]\nprefix = "acme"\n'
                      'model = "mistral-small-latest"\nreasoning = true\n', encoding="utf-8")
    settings = load_settings(config, data_dir=tmp_path / "data")
    assert [f.prefix for f in settings.model_families] == ["mistral-large", "acme"]
    catalog = ModelCatalog(settings.models, None if settings.model_family_defaults else [], settings.model_families)
    # the operator's row wins over the default rule "a family follows its -latest name"
    assert catalog.resolve("mistral-large-2411").id == SMOL  # type: ignore[union-attr]
    assert catalog.resolve("mistral-large-latest").id == QWEN  # type: ignore[union-attr]  # a catalog name
    assert catalog.resolve("acme-2601").id == QWEN  # type: ignore[union-attr]
    assert catalog.is_reasoning("acme-latest")
