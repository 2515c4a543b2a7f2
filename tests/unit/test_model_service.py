"""services.models: the configured catalog (one card per name) plus each workspace's fine-tuned models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from mistral_gateway.config import ModelEntry, default_models
from mistral_gateway.errors import BadRequest, Forbidden, NotFound
from mistral_gateway.protocol.models import CAPABILITY_NAMES, BaseModelCard, FTModelCard, ListModelsQuery, ModelList
from mistral_gateway.services.models import ModelCatalog, ModelService
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FineTunedModelRecord
from mistral_gateway.storage.tokens import TokenRepository

CHAT = ModelEntry(id="local-chat", aliases=["mistral-small-latest", "mistral-large-latest"], name="Chat",
                  description="chat model", max_context_length=4096,
                  capabilities=["completion_chat", "function_calling"], default_model_temperature=0.3,
                  created=1000, owned_by="me")
EMBED = ModelEntry(id="local-embed", aliases=["mistral-embed"], capabilities=[], created=2000, owned_by="other")


@pytest.fixture
def database_backend() -> str:
    return "sqlite"  # the database is incidental here; the storage tests run on PostgreSQL too


@pytest.fixture
def workspaces(db: Database) -> tuple[str, str]:
    tokens = TokenRepository(db)
    return tokens.ensure_workspace("a", now=1).id, tokens.ensure_workspace("b", now=1).id


@pytest.fixture
def ft_repo(db: Database, tmp_path: Path) -> FineTunedModelRepository:
    return FineTunedModelRepository(db, FileEpoch(tmp_path / "models.epoch"))


@pytest.fixture
def svc(ft_repo: FineTunedModelRepository, clock: Any) -> ModelService:
    return ModelService(ModelCatalog([CHAT, EMBED]), ft_repo, cache_seconds=5, clock=clock)


def add_ft(repo: FineTunedModelRepository, workspace_id: str, model_id: str = "ft:local-chat:abc123") -> None:
    repo.add(FineTunedModelRecord(
        id=model_id, workspace_id=workspace_id, root="local-chat", job_id="11111111-2222-4333-8444-555555555555",
        name="tuned", description="a fine-tune", archived=False, capabilities=("completion_chat", "fine_tuning"),
        max_context_length=4096, created_at=1234,
    ))


# -- catalog ----------------------------------------------------------------------------------------------


def test_every_alias_is_its_own_card() -> None:
    catalog = ModelCatalog([CHAT, EMBED])
    ids = [c.id for c in catalog.cards]
    assert ids == ["local-chat", "mistral-small-latest", "mistral-large-latest", "local-embed", "mistral-embed"]
    for card in catalog.cards:
        entry = catalog.resolve(card.id)
        assert entry is not None
        names = [entry.id, *entry.aliases]
        assert card.aliases == [n for n in names if n != card.id]
        assert card.id not in card.aliases
        assert card.name == entry.id
        assert card.type == "base"
        assert card.object == "model"
        assert card.created == entry.created
        assert card.owned_by == entry.owned_by
        assert card.max_context_length == entry.max_context_length


def test_card_details() -> None:
    catalog = ModelCatalog([CHAT, EMBED])
    small = catalog.card("mistral-small-latest")
    assert small is not None
    assert small.description == "chat model"
    assert small.default_model_temperature == 0.3
    assert small.capabilities.completion_chat is True
    assert small.capabilities.function_calling is True
    assert small.capabilities.completion_fim is False
    embed = catalog.card("mistral-embed")
    assert embed is not None
    assert not any(getattr(embed.capabilities, name) for name in CAPABILITY_NAMES)
    assert catalog.card("nope") is None
    assert catalog.resolve("nope") is None


def test_default_catalog_builds() -> None:
    catalog = ModelCatalog(default_models())
    n_names = sum(1 + len(e.aliases) for e in default_models())
    assert len(catalog.cards) == n_names
    codestral = catalog.card("codestral-latest")
    assert codestral is not None
    assert codestral.capabilities.completion_fim


@pytest.mark.parametrize("entries", [
    [ModelEntry(id="a"), ModelEntry(id="a")],
    [ModelEntry(id="a", aliases=["x"]), ModelEntry(id="b", aliases=["x"])],
    [ModelEntry(id="a", aliases=["b"]), ModelEntry(id="b")],
    [ModelEntry(id="a", aliases=["a"])],
    [ModelEntry(id="a", aliases=["x", "x"])],
])
def test_duplicate_names_rejected(entries: list[ModelEntry]) -> None:
    with pytest.raises(ValueError, match="declared twice"):
        ModelCatalog(entries)


def test_unknown_capability_rejected() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        ModelCatalog([ModelEntry(id="a", capabilities=["completion_chat", "telepathy"])])


def test_every_known_capability_accepted() -> None:
    entry = ModelEntry(id="a", capabilities=list(CAPABILITY_NAMES), mmproj="mmproj.gguf")  # vision needs one
    card = ModelCatalog([entry]).card("a")
    assert card is not None
    assert all(getattr(card.capabilities, name) for name in CAPABILITY_NAMES)


# -- service ----------------------------------------------------------------------------------------------


def test_list_contains_base_cards(svc: ModelService, workspaces: tuple[str, str]) -> None:
    listing = svc.list(workspaces[0])
    assert isinstance(listing, ModelList)
    assert listing.object == "list"
    assert [c.id for c in listing.data] == ["local-chat", "mistral-small-latest", "mistral-large-latest",
                                            "local-embed", "mistral-embed"]


def test_retrieve_by_id_and_alias(svc: ModelService, workspaces: tuple[str, str]) -> None:
    by_alias = svc.retrieve(workspaces[0], "mistral-large-latest")
    assert isinstance(by_alias, BaseModelCard)
    assert by_alias.id == "mistral-large-latest"
    assert by_alias.name == "local-chat"
    assert sorted(by_alias.aliases) == ["local-chat", "mistral-small-latest"]
    assert svc.retrieve(workspaces[0], "local-chat").id == "local-chat"


def test_retrieve_unknown(svc: ModelService, workspaces: tuple[str, str]) -> None:
    with pytest.raises(NotFound) as info:
        svc.retrieve(workspaces[0], "gpt-4")
    assert info.value.code == "MODEL_NOT_FOUND"
    assert info.value.param == "model_id"


def test_fine_tuned_models_per_workspace(svc: ModelService, ft_repo: FineTunedModelRepository,
                                         workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    add_ft(ft_repo, a)
    listing_a = [c.id for c in svc.list(a).data]
    assert listing_a[-1] == "ft:local-chat:abc123"
    assert "ft:local-chat:abc123" not in [c.id for c in svc.list(b).data]
    card = svc.retrieve(a, "ft:local-chat:abc123")
    assert isinstance(card, FTModelCard)
    assert card.type == "fine-tuned"
    assert (card.root, card.job, card.archived, card.owned_by) == ("local-chat", "11111111-2222-4333-8444-555555555555",
                                                                  False, a)
    # the card says what the model serves: its base's chat capabilities (a fine-tuned model is no base for jobs)
    assert (card.capabilities.completion_chat, card.capabilities.function_calling) == (True, True)
    assert card.capabilities.fine_tuning is False
    assert card.max_context_length == 4096
    assert card.created == 1234
    with pytest.raises(NotFound):
        svc.retrieve(b, "ft:local-chat:abc123")


@pytest.mark.parametrize("name", ["local-chat", "mistral-small-latest", "mistral-embed"])
def test_delete_base_model_is_forbidden(svc: ModelService, workspaces: tuple[str, str], name: str) -> None:
    with pytest.raises(Forbidden) as info:
        svc.delete(workspaces[0], name)
    assert info.value.status == 403
    assert info.value.code == "BASE_MODEL_NOT_DELETABLE"
    assert svc.retrieve(workspaces[0], name).id == name


def test_delete_fine_tuned(svc: ModelService, ft_repo: FineTunedModelRepository,
                           workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    add_ft(ft_repo, a)
    with pytest.raises(NotFound):
        svc.delete(b, "ft:local-chat:abc123")  # another workspace's model is simply not found
    assert svc.retrieve(a, "ft:local-chat:abc123").id == "ft:local-chat:abc123"
    out = svc.delete(a, "ft:local-chat:abc123")
    assert (out.id, out.object, out.deleted) == ("ft:local-chat:abc123", "model", True)
    with pytest.raises(NotFound):
        svc.retrieve(a, "ft:local-chat:abc123")
    with pytest.raises(NotFound):
        svc.delete(a, "ft:local-chat:abc123")


def test_delete_unknown_and_empty(svc: ModelService, workspaces: tuple[str, str]) -> None:
    with pytest.raises(NotFound) as info:
        svc.delete(workspaces[0], "ft:nope")
    assert info.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(BadRequest):
        svc.delete(workspaces[0], "  ")


def test_model_filter(svc: ModelService, ft_repo: FineTunedModelRepository, workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add_ft(ft_repo, a)
    assert [c.id for c in svc.list(a, ListModelsQuery(model="mistral-embed")).data] == ["mistral-embed"]
    assert [c.id for c in svc.list(a, ListModelsQuery(model="ft:local-chat:abc123")).data] == ["ft:local-chat:abc123"]
    assert svc.list(a, ListModelsQuery(model="nope")).data == []
    assert len(svc.list(a, ListModelsQuery()).data) == 6


def test_provider_filter(svc: ModelService, ft_repo: FineTunedModelRepository, workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add_ft(ft_repo, a)
    assert [c.id for c in svc.list(a, ListModelsQuery(provider="me")).data] == [
        "local-chat", "mistral-small-latest", "mistral-large-latest"]
    assert [c.id for c in svc.list(a, ListModelsQuery(provider="other")).data] == ["local-embed", "mistral-embed"]
    assert [c.id for c in svc.list(a, ListModelsQuery(provider=a)).data] == ["ft:local-chat:abc123"]
    assert svc.list(a, ListModelsQuery(provider="nobody")).data == []
    both = svc.list(a, ListModelsQuery(provider="me", model="mistral-small-latest")).data
    assert [c.id for c in both] == ["mistral-small-latest"]
    assert svc.list(a, ListModelsQuery(provider="other", model="mistral-small-latest")).data == []


# -- rendered listing cache --------------------------------------------------------------------------------


def test_list_json_renders_the_listing(svc: ModelService, workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    body = svc.list_json(a, ListModelsQuery())
    assert orjson.loads(body) == orjson.loads(svc.list(a, ListModelsQuery()).model_dump_json())
    assert orjson.loads(svc.list_json(a, ListModelsQuery(model="mistral-embed")))["data"][0]["id"] == "mistral-embed"


def test_listing_cache_hit_and_keying(svc: ModelService, workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    q = ListModelsQuery()
    assert svc.list_json_cached(a, q) is None
    body = svc.list_json(a, q)
    assert svc.list_json_cached(a, ListModelsQuery()) == body
    assert svc.list_json_cached(b, q) is None  # per workspace
    assert svc.list_json_cached(a, ListModelsQuery(provider="me")) is None  # per filter
    assert svc.list_json_cached(a, ListModelsQuery(model="local-chat")) is None


def test_listing_cache_expires(svc: ModelService, workspaces: tuple[str, str], clock: Any) -> None:
    a, _ = workspaces
    body = svc.list_json(a, ListModelsQuery())
    clock.advance(5)
    assert svc.list_json_cached(a, ListModelsQuery()) == body
    clock.advance(0.5)
    assert svc.list_json_cached(a, ListModelsQuery()) is None


def test_listing_cache_dropped_on_own_writes(svc: ModelService, ft_repo: FineTunedModelRepository,
                                             workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    svc.list_json(a, ListModelsQuery())
    add_ft(ft_repo, a)
    assert svc.list_json_cached(a, ListModelsQuery()) is None
    fresh = svc.list_json(a, ListModelsQuery())
    assert "ft:local-chat:abc123" in [c["id"] for c in orjson.loads(fresh)["data"]]
    assert svc.list_json_cached(a, ListModelsQuery()) == fresh
    svc.delete(a, "ft:local-chat:abc123")
    assert svc.list_json_cached(a, ListModelsQuery()) is None
    assert "ft:local-chat:abc123" not in [c["id"] for c in orjson.loads(svc.list_json(a, ListModelsQuery()))["data"]]


def test_listing_cache_dropped_on_another_process_write(svc: ModelService, db: Database, tmp_path: Path,
                                                        workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    svc.list_json(a, ListModelsQuery())
    other_db = Database(db.url)  # another process: its own engine and epoch handle, same files
    try:
        add_ft(FineTunedModelRepository(other_db, FileEpoch(tmp_path / "models.epoch")), a)
    finally:
        other_db.dispose()
    assert svc.list_json_cached(a, ListModelsQuery()) is None
    assert "ft:local-chat:abc123" in [c["id"] for c in orjson.loads(svc.list_json(a, ListModelsQuery()))["data"]]


def test_listing_cache_is_bounded(ft_repo: FineTunedModelRepository, workspaces: tuple[str, str], clock: Any) -> None:
    a, _ = workspaces
    svc = ModelService(ModelCatalog([CHAT, EMBED]), ft_repo, cache_seconds=60, cache_size=2, clock=clock)
    queries = [ListModelsQuery(model=m) for m in ("local-chat", "local-embed", "mistral-embed")]
    for q in queries:
        svc.list_json(a, q)
    assert svc.list_json_cached(a, queries[0]) is None
    assert svc.list_json_cached(a, queries[1]) is not None
    assert svc.list_json_cached(a, queries[2]) is not None


def test_listing_rendered_during_a_write_is_not_cached(db: Database, tmp_path: Path, workspaces: tuple[str, str],
                                                      clock: Any) -> None:
    """A write landing between reading the rows and caching: the stale listing must not be cached, even when
    another request has already synchronised the cache with the new epoch in between."""
    a, _ = workspaces
    hooks: list[Any] = []

    class RacingRepository(FineTunedModelRepository):
        def list(self, workspace_id: str) -> list[FineTunedModelRecord]:
            rows = super().list(workspace_id)
            for hook in hooks:
                hook()
            return rows

    repo = RacingRepository(db, FileEpoch(tmp_path / "models.epoch"))
    svc = ModelService(ModelCatalog([CHAT, EMBED]), repo, cache_seconds=60, clock=clock)

    def write_elsewhere() -> None:
        hooks.clear()
        add_ft(FineTunedModelRepository(db, FileEpoch(tmp_path / "models.epoch")), a)
        assert svc.list_json_cached(a, ListModelsQuery(model="x")) is None  # a concurrent request syncs the epoch

    hooks.append(write_elsewhere)
    stale = svc.list_json(a, ListModelsQuery())
    assert "ft:local-chat:abc123" not in stale.decode()
    assert svc.list_json_cached(a, ListModelsQuery()) is None
    assert "ft:local-chat:abc123" in svc.list_json(a, ListModelsQuery()).decode()
