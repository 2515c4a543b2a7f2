"""The model catalog: configured base models (each alias listed as its own card) plus fine-tuned models."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mistral_gateway.config import ModelEntry, ModelFamily, RouteTarget, default_model_families
from mistral_gateway.engines.manager import EngineManager, kind_of
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
from mistral_gateway.services.epoch_cache import EpochCache
from mistral_gateway.services.fine_tuned import FineTunedModels
from mistral_gateway.services.model_ids import MAX_ID_LENGTH, FamilyTable
from mistral_gateway.storage.models import FineTunedModelRepository

__all__ = ["ModelCatalog", "ModelService"]


class ModelCatalog:
    """Resolves a model name to its configured entry: a catalog name (id or alias) first, else by Mistral family
    (``services.model_ids``): ``mistral-large-2411``, ``open-mistral-7b`` or ``magistral-medium-latest`` go where
    their family's row says. Immutable after construction but for a bounded cache of family resolutions."""

    def __init__(self, entries: list[ModelEntry], families: Sequence[ModelFamily] | None = None,
                 overrides: Sequence[ModelFamily] = (), *, cache_size: int = 4096) -> None:
        self.entries = tuple(entries)
        self._by_name: dict[str, ModelEntry] = {}
        for entry in self.entries:
            _check_capabilities(f"model {entry.id!r}", entry.capabilities)
            if entry.engine == "none" and any(r.upstream == "local" and r.model in (None, entry.id)
                                              for r in entry.routes):
                raise ValueError(f"model {entry.id!r} has engine 'none': a local route must name another model")
            for name in (entry.id, *entry.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name {name!r} is declared twice in the catalog")
                self._by_name[name] = entry
        for entry in self.entries:  # a classifier reads the embeddings of another entry: it must be one
            encoder = self._by_name.get(entry.encoder) if entry.engine == "classifier" and entry.encoder else None
            if entry.engine == "classifier" and (encoder is None or kind_of(encoder) != "embedding"):
                raise ValueError(f"model {entry.id!r}: its encoder {entry.encoder!r} is not an embedding model of "
                                 f"the catalog")
        defaults = default_model_families() if families is None else list(families)
        self.families = FamilyTable([*defaults, *overrides])
        # an operator's row naming a model is followed as written; default rows defer to <prefix>-latest first
        self._explicit = frozenset(f.prefix for f in overrides if f.model is not None)
        self._family_entry = {f.prefix: self._family_target(f) for f in self.families.families}
        self._cache: OrderedDict[str, _Resolved | None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._static: dict[str, _Resolved | None] = {n: self._lookup(n) for n in self._by_name}  # never evicted
        self._cards = tuple(card for entry in self.entries for card in self._entry_cards(entry))
        self._card_by_id = {card.id: card for card in self._cards}

    def resolve(self, name: str) -> ModelEntry | None:
        resolved = self._resolved(name)
        return None if resolved is None else resolved.entry

    def is_reasoning(self, name: str) -> bool:
        """Whether ``name`` is a reasoning model: its family says so, or its entry has the capability."""
        resolved = self._resolved(name)
        return resolved is not None and resolved.reasoning

    @property
    def cards(self) -> tuple[BaseModelCard, ...]:
        """The listing: catalog names only, not every dated id a family accepts."""
        return self._cards

    def card(self, name: str) -> BaseModelCard | None:
        """A card for any name that resolves (Mistral answers cards for dated ids too)."""
        card = self._card_by_id.get(name)
        if card is not None:
            return card
        resolved = self._resolved(name)
        return None if resolved is None else _card(name, resolved)

    def _resolved(self, name: str) -> _Resolved | None:
        hit = self._static.get(name)
        if hit is not None:
            return hit
        with self._lock:
            if name in self._cache:
                return self._cache[name]
        resolved = self._lookup(name)
        if len(name) <= MAX_ID_LENGTH:  # longer names never resolve and are not worth a slot
            with self._lock:
                self._cache[name] = resolved
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return resolved

    def _lookup(self, name: str) -> _Resolved | None:
        match = self.families.match(name)
        reasoning = match is not None and match.family.reasoning
        base = self._by_name.get(name)
        if base is None and match is not None:
            prefix = match.family.prefix
            sized = None
            if match.size and prefix not in self._explicit:
                sized = self._by_name.get(f"{prefix}-{match.size}-latest")
            base = sized or self._family_entry[prefix]
            if base is not None and _upstream(base):
                return _Resolved(_pinned(base, name), base, reasoning or "reasoning" in base.capabilities)
        return None if base is None else _Resolved(base, base, reasoning or "reasoning" in base.capabilities)

    def _family_target(self, family: ModelFamily) -> ModelEntry | None:
        where = f"model family {family.prefix!r}"
        _check_capabilities(where, [*family.capabilities, *([family.prefer] if family.prefer else [])])
        explicit = family.prefix in self._explicit
        latest = self._by_name.get(f"{family.prefix}-latest")
        if latest is not None and not explicit:
            return latest
        if family.prefer is not None and not explicit:
            preferred = [e for e in self.entries if family.prefer in e.capabilities and (e.served_locally
                                                                                          or _upstream(e))]
            if preferred:
                return preferred[0]
        if family.model is None:
            return ModelEntry(id=f"{family.prefix}-latest", engine="none", capabilities=family.capabilities,
                              description=f"Mistral's {family.prefix} family: no local engine serves it here")
        target = self._by_name.get(family.model)
        if target is None and explicit:
            raise ValueError(f"{where}: model {family.model!r} is not in the catalog")
        return target  # None: a default row whose stand-in the configured catalog dropped

    def _entry_cards(self, entry: ModelEntry) -> list[BaseModelCard]:
        return [_card(name, resolved) for name in (entry.id, *entry.aliases)
                if (resolved := self._static[name]) is not None]


@dataclass(frozen=True, slots=True)
class _Resolved:
    entry: ModelEntry  # what serves the name (for a family id routed upstream: a copy forwarding that id)
    base: ModelEntry  # the catalog entry (or the family's engine-less stand-in)
    reasoning: bool  # its family is a reasoning family, or the entry has the capability


def _upstream(entry: ModelEntry) -> bool:
    return any(r.upstream != "local" for r in entry.routes)


def _check_capabilities(where: str, names: Sequence[str]) -> None:
    bad = [c for c in names if c not in CAPABILITY_NAMES]
    if bad:
        raise ValueError(f"{where}: unknown capabilities {bad}; known: {list(CAPABILITY_NAMES)}")


def _pinned(entry: ModelEntry, name: str) -> ModelEntry:
    """A family id routed to an upstream is forwarded as the caller wrote it (``mistral-large-2411`` stays pinned
    to that release), unless the route names a model; a ``local`` fallback target keeps the entry's own engine."""
    routes = [RouteTarget(upstream="local", model=r.model or entry.id) if r.upstream == "local" else r
              for r in entry.routes]
    return entry.model_copy(update={"id": name, "aliases": [], "routes": routes})


class ModelService:
    """Listings are cached per workspace and filter, rendered to JSON once: ``GET /v1/models`` is the hottest read
    and must not touch the database. The cache drops on the repository's epoch (any process on this node writing
    fine-tuned models) and after ``cache_seconds`` (other nodes sharing the database)."""

    def __init__(
        self,
        catalog: ModelCatalog,
        fine_tuned: FineTunedModelRepository,
        *,
        data_dir: Path | None = None,
        engines: EngineManager | None = None,
        cache_seconds: float = 5.0,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self._fine_tuned = fine_tuned
        # the workspace's fine-tuned models as servable entries (data_dir: where their files are)
        self.fine_tuned = FineTunedModels(catalog, fine_tuned, data_dir, engines=engines,
                                          cache_seconds=cache_seconds, clock=clock)
        self._listings: EpochCache[tuple[str, str | None, str | None], bytes] = EpochCache(
            fine_tuned.epoch, ttl=cache_seconds, size=cache_size, clock=clock)

    def list_json_cached(self, workspace_id: str, query: ListModelsQuery) -> bytes | None:
        """The event-loop-safe fast path: the rendered listing if cached and fresh, else None."""
        return self._listings.get((workspace_id, query.model, query.provider))

    def list_json(self, workspace_id: str, query: ListModelsQuery) -> bytes:
        """Blocking (reads the database): render the listing and cache it."""
        epoch = self._listings.epoch()
        body = self.list(workspace_id, query).model_dump_json().encode()
        self._listings.put((workspace_id, query.model, query.provider), body, epoch)
        return body

    def list(self, workspace_id: str, query: ListModelsQuery | None = None) -> ModelList:
        cards: list[BaseModelCard | FTModelCard] = list(self.catalog.cards)
        named = query is not None and bool(query.model)  # archived models are listed only when asked for by id
        cards += [self.fine_tuned.card(r) for r in self._fine_tuned.list(workspace_id) if named or not r.archived]
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
        return self.fine_tuned.card(record)

    def resolve(self, workspace_id: str, name: str) -> ModelEntry | None:
        """Blocking: ``name`` in the catalog, else as a fine-tuned model of the workspace (an archived one raises
        ``MODEL_ARCHIVED``); None: neither."""
        entry = self.catalog.resolve(name)
        if entry is not None:
            return entry
        return self.fine_tuned.resolve(workspace_id, name).value()

    def delete(self, workspace_id: str, model_id: str) -> DeleteModelOut:
        if not model_id.strip():
            raise BadRequest("model_id must not be empty", param="model_id")
        if self.catalog.resolve(model_id) is not None:
            raise Forbidden(f"model {model_id!r} is a base model; only fine-tuned models can be deleted",
                            code="BASE_MODEL_NOT_DELETABLE", param="model_id")
        if not self.fine_tuned.delete(workspace_id, model_id):  # its files and engine go with it
            raise _not_found(model_id)
        return DeleteModelOut(id=model_id, deleted=True)


def _not_found(model_id: str) -> NotFound:
    return NotFound(f"model {model_id!r} not found", code="MODEL_NOT_FOUND", param="model_id")


def _capabilities(names: Sequence[str]) -> ModelCapabilities:
    return ModelCapabilities(**{name: True for name in names})


def _card(name: str, resolved: _Resolved) -> BaseModelCard:
    """The card of one name; a family id's card describes the entry that serves it, under the caller's id. A family
    nothing serves here has no capabilities: its operations would fail."""
    base = resolved.base
    names = [base.id, *base.aliases]
    served = base.engine != "none" or _upstream(base)
    capabilities = [*base.capabilities, *(["reasoning"] if resolved.reasoning else [])] if served else []
    return BaseModelCard(
        id=name,
        created=base.created,
        owned_by=base.owned_by,
        capabilities=_capabilities(capabilities),
        name=base.id,
        description=base.description,
        max_context_length=base.max_context_length,
        aliases=[other for other in names if other != name],
        default_model_temperature=base.default_model_temperature,
    )
