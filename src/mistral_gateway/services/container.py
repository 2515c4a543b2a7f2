"""Builds every service from the settings: the one place where the object graph is wired, and where background
components (threads, workers) are started and stopped together.

A background component has ``start()`` and ``stop()`` (both idempotent, ``stop`` waits for it to end). The container
owns the usage writer and the lease renewer; others (job workers) join with ``services.add_background(worker)``
before ``services.start()``. The HTTP app's lifespan starts them and ``close()`` stops them in reverse order; CLI
commands that only read or write records never start them (``close()`` still writes queued usage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from mistral_gateway.config import Settings
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.jobs import HandlerRegistry, JobRunner, RunnerOptions
from mistral_gateway.registry import Registry
from mistral_gateway.security.signing import UrlSigner, load_or_create_secret
from mistral_gateway.services.batch import BatchService
from mistral_gateway.services.batch_direct import build_batch_service
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.classifiers import ClassifierService
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
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.permissions import secure_data_dir
from mistral_gateway.storage.secrets import UpstreamSecretRepository
from mistral_gateway.storage.tokens import TokenRepository
from mistral_gateway.storage.usage import UsageRepository
from mistral_gateway.upstreams import Router, UpstreamClient, build_upstreams, passthrough_map

__all__ = ["Background", "Services", "build_services"]

log = logging.getLogger("mistral_gateway")


class Background(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


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
    classifiers: ClassifierService
    limits: LimitService
    usage: UsageLog
    jobs: JobRepository
    job_runner: JobRunner  # started by the app's lifespan (run_embedded_worker) or `mistral-gateway worker`
    router: Router = field(default_factory=lambda: Router({}))
    passthrough: dict[str, UpstreamClient] = field(default_factory=dict)  # workspace name -> upstream
    background: list[Background] = field(default_factory=list)  # started by ``start``, stopped by ``close``
    started: bool = False

    def add_background(self, component: Background) -> None:
        """A component started and stopped with the others (started at once if the services already run)."""
        self.background.append(component)
        if self.started:
            component.start()

    def start(self) -> None:
        """Start every background component, in order (idempotent)."""
        if self.started:
            return
        self.started = True
        for component in [self.usage, self.limits, *self.background]:
            component.start()

    def stop(self) -> None:
        """Stop the background components in reverse order; each gets its turn even if another fails."""
        for component in reversed([self.usage, self.limits, *self.background]):
            try:
                component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
        self.started = False
    batch: BatchService | None = None

    def close(self) -> None:
        self.stop()
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
    jobs = JobRepository(db, max_attempts=settings.job_max_attempts)
    job_runner = JobRunner(jobs, HandlerRegistry(settings.job_handlers), RunnerOptions.from_settings(settings))
    chat = ChatService(models.catalog, engines, reasoning=settings.reasoning, images=images)
    fim, embeddings = FimService(models.catalog, engines), EmbeddingService(models.catalog, engines, fine_tuned)
    # Lines run on the services directly until an Application takes them over (app.batch.route_batches): the
    # application layer imports this module, so it cannot be built here.
    batch = build_batch_service(db, blobs, models.catalog, chat, fim, embeddings, settings.max_json_body_bytes)
    batch.submit = lambda workspace_id, payload: job_runner.submit(workspace_id, "batch", payload)
    job_runner.handlers.register("batch", batch.handler)
    return Services(settings=settings, registry=registry, db=db, blobs=blobs, tokens=tokens, files=files,
                    models=models, fine_tuned=fine_tuned, engines=engines, chat=chat, fim=fim, embeddings=embeddings,
                    classifiers=ClassifierService(models.catalog, engines),
                    limits=limits, usage=usage, jobs=jobs, job_runner=job_runner, router=Router(upstreams),
                    passthrough=passthrough_map(settings, upstreams), batch=batch)
