"""Builds every service from the settings: the one place where the object graph is wired."""

from __future__ import annotations

from dataclasses import dataclass, field

from mistral_gateway.config import Settings
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.registry import Registry
from mistral_gateway.security.signing import UrlSigner, load_or_create_secret
from mistral_gateway.services.batch import BatchService
from mistral_gateway.services.batch_direct import build_batch_service
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.embeddings import EmbeddingService
from mistral_gateway.services.files import FileService
from mistral_gateway.services.fim import FimService
from mistral_gateway.services.images import ImageLimits, ImageLoader
from mistral_gateway.services.limits import LimitService, make_limiter
from mistral_gateway.services.models import ModelCatalog, ModelService
from mistral_gateway.services.tokens import TokenService
from mistral_gateway.services.upstream_keys import UpstreamKeyStore
from mistral_gateway.services.usage import UsageLog
from mistral_gateway.storage.blobs import LocalBlobStore
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.permissions import secure_data_dir
from mistral_gateway.storage.secrets import UpstreamSecretRepository
from mistral_gateway.storage.tokens import TokenRepository
from mistral_gateway.storage.usage import UsageRepository
from mistral_gateway.upstreams import Router, UpstreamClient, build_upstreams, passthrough_map

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    settings: Settings
    registry: Registry
    db: Database
    blobs: LocalBlobStore
    tokens: TokenService
    files: FileService
    models: ModelService
    fine_tuned: FineTunedModelRepository
    engines: EngineManager
    chat: ChatService
    fim: FimService
    embeddings: EmbeddingService
    limits: LimitService
    usage: UsageLog
    router: Router = field(default_factory=lambda: Router({}))
    passthrough: dict[str, UpstreamClient] = field(default_factory=dict)  # workspace name -> upstream
    batch: BatchService | None = None

    def close(self) -> None:
        self.engines.close()
        self.limits.close()
        self.usage.close()  # writes the records still queued
        self.db.dispose()


def build_services(settings: Settings, registry: Registry | None = None, *, migrate: bool = True) -> Services:
    registry = registry or Registry.load()
    secure_data_dir(settings.data_dir)  # 0700, and an older version's 0755/0644 data dir repaired
    db = Database(settings.sqlalchemy_url)
    if migrate:
        db.migrate()
    blobs = LocalBlobStore(settings.blob_dir)
    secret = (settings.signing_secret.encode("utf-8") if settings.signing_secret
              else load_or_create_secret(settings.data_dir / "signing.key"))
    tokens = TokenService(
        TokenRepository(db),
        FileEpoch(settings.data_dir / "tokens.epoch"),
        valid_scopes=registry.scopes,
        cache_size=settings.token_cache_size,
        cache_seconds=settings.token_cache_seconds,
    )
    files = FileService(
        FileRepository(db),
        blobs,
        UrlSigner(secret),
        max_upload_bytes=settings.max_upload_bytes,
        signed_url_max_hours=settings.signed_url_max_hours,
    )
    fine_tuned = FineTunedModelRepository(db, FileEpoch(settings.data_dir / "models.epoch"))
    catalog = ModelCatalog(settings.models, None if settings.model_family_defaults else [], settings.model_families)
    models = ModelService(catalog, fine_tuned, cache_seconds=settings.models_cache_seconds)
    engines = EngineManager(settings)
    upstream_keys = UpstreamKeyStore(UpstreamSecretRepository(db), settings)
    upstreams = build_upstreams(settings, keys=upstream_keys.load() if settings.upstreams else None)
    limits = LimitService(make_limiter(settings, db), workspaces=settings.workspaces,
                          default=settings.default_token_limits)
    usage = UsageLog(UsageRepository(db), flush_seconds=settings.usage_flush_seconds)
    images = ImageLoader(ImageLimits.from_settings(settings))
    chat = ChatService(models.catalog, engines, reasoning=settings.reasoning, images=images)
    fim, embeddings = FimService(models.catalog, engines), EmbeddingService(models.catalog, engines, fine_tuned)
    return Services(settings=settings, registry=registry, db=db, blobs=blobs, tokens=tokens, files=files,
                    models=models, fine_tuned=fine_tuned, engines=engines, chat=chat, fim=fim, embeddings=embeddings,
                    limits=limits, usage=usage, router=Router(upstreams),
                    passthrough=passthrough_map(settings, upstreams),
                    batch=build_batch_service(db, blobs, models.catalog, chat, fim, embeddings,
                                              settings.max_json_body_bytes))
