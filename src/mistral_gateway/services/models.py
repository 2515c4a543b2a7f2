"""The model catalog: configured base models (each alias listed as its own card) plus fine-tuned models."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from mistral_gateway.config import ModelEntry
from mistral_gateway.errors import BadRequest, Forbidden, NotFound
from mistral_gateway.protocol.models import (
    CAPABILITY_NAMES,
    BaseModelCard,
    DeleteModelOut,
    FTModelCard,
    ListModelsQuery,
    ModelCapabilities,
    ModelList,
)
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FineTunedModelRecord

__all__ = ["ModelCatalog", "ModelService"]


class ModelCatalog:
    """Resolves a model name (id or alias) to its configured entry. Immutable after construction."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        self.entries = tuple(entries)
        self._by_name: dict[str, ModelEntry] = {}
        for entry in self.entries:
            bad = [c for c in entry.capabilities if c not in CAPABILITY_NAMES]
            if bad:
                raise ValueError(f"model {entry.id!r}: unknown capabilities {bad}; known: {list(CAPABILITY_NAMES)}")
            for name in (entry.id, *entry.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name {name!r} is declared twice in the catalog")
                self._by_name[name] = entry
        self._cards = tuple(card for entry in self.entries for card in _cards(entry))
        self._card_by_id = {card.id: card for card in self._cards}

    def resolve(self, name: str) -> ModelEntry | None:
        return self._by_name.get(name)

    def is_reasoning(self, name: str) -> bool:
        """Temporary stub (the models branch implements family rules): Mistral's reasoning families by name."""
        return name.startswith(("magistral-", "mistral-medium-3-5", "mistral-medium-3.5"))

    @property
    def cards(self) -> tuple[BaseModelCard, ...]:
        return self._cards

    def card(self, name: str) -> BaseModelCard | None:
        return self._card_by_id.get(name)


class ModelService:
    """Listings are cached per workspace and filter, rendered to JSON once: ``GET /v1/models`` is the hottest read
    and must not touch the database. The cache drops on the repository's epoch (any process on this node writing
    fine-tuned models) and after ``cache_seconds`` (other nodes sharing the database)."""

    def __init__(
        self,
        catalog: ModelCatalog,
        fine_tuned: FineTunedModelRepository,
        *,
        cache_seconds: float = 5.0,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self._fine_tuned = fine_tuned
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str | None, str | None], tuple[float, bytes]] = OrderedDict()
        self._cache_epoch = fine_tuned.epoch.current()

    def list_json_cached(self, workspace_id: str, query: ListModelsQuery) -> bytes | None:
        """The event-loop-safe fast path: the rendered listing if cached and fresh, else None."""
        epoch = self._fine_tuned.epoch.current()
        with self._lock:
            if epoch != self._cache_epoch:
                self._cache.clear()
                self._cache_epoch = epoch
                return None
            hit = self._cache.get((workspace_id, query.model, query.provider))
        if hit is None or self._clock() - hit[0] > self._cache_seconds:
            return None
        return hit[1]

    def list_json(self, workspace_id: str, query: ListModelsQuery) -> bytes:
        """Blocking (reads the database): render the listing and cache it."""
        epoch = self._fine_tuned.epoch.current()
        body = self.list(workspace_id, query).model_dump_json().encode()
        with self._lock:
            if epoch == self._fine_tuned.epoch.current() == self._cache_epoch:
                self._cache[(workspace_id, query.model, query.provider)] = (self._clock(), body)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return body

    def list(self, workspace_id: str, query: ListModelsQuery | None = None) -> ModelList:
        cards: list[BaseModelCard | FTModelCard] = list(self.catalog.cards)
        cards += [_ft_card(r) for r in self._fine_tuned.list(workspace_id)]
        if query is not None and query.model:
            cards = [c for c in cards if c.id == query.model]
        if query is not None and query.provider:
            cards = [c for c in cards if c.owned_by == query.provider]
        return ModelList(data=cards)

    def retrieve(self, workspace_id: str, model_id: str) -> BaseModelCard | FTModelCard:
        card = self.catalog.card(model_id)
        if card is not None:
            return card
        record = self._fine_tuned.get(workspace_id, model_id)
        if record is None:
            raise _not_found(model_id)
        return _ft_card(record)

    def delete(self, workspace_id: str, model_id: str) -> DeleteModelOut:
        if not model_id.strip():
            raise BadRequest("model_id must not be empty", param="model_id")
        if self.catalog.resolve(model_id) is not None:
            raise Forbidden(f"model {model_id!r} is a base model; only fine-tuned models can be deleted",
                            code="BASE_MODEL_NOT_DELETABLE", param="model_id")
        if not self._fine_tuned.delete(workspace_id, model_id):
            raise _not_found(model_id)
        return DeleteModelOut(id=model_id, deleted=True)


def _not_found(model_id: str) -> NotFound:
    return NotFound(f"model {model_id!r} not found", code="MODEL_NOT_FOUND", param="model_id")


def _capabilities(names: tuple[str, ...] | list[str]) -> ModelCapabilities:
    return ModelCapabilities(**{name: True for name in names})


def _cards(entry: ModelEntry) -> list[BaseModelCard]:
    names = [entry.id, *entry.aliases]
    return [
        BaseModelCard(
            id=name,
            created=entry.created,
            owned_by=entry.owned_by,
            capabilities=_capabilities(entry.capabilities),
            name=entry.id,
            description=entry.description,
            max_context_length=entry.max_context_length,
            aliases=[other for other in names if other != name],
            default_model_temperature=entry.default_model_temperature,
        )
        for name in names
    ]


def _ft_card(record: FineTunedModelRecord) -> FTModelCard:
    return FTModelCard(
        id=record.id,
        created=record.created_at,
        owned_by=record.workspace_id,
        capabilities=_capabilities(record.capabilities),
        name=record.name,
        description=record.description,
        max_context_length=record.max_context_length,
        job=record.job_id,
        root=record.root,
        archived=record.archived,
    )
