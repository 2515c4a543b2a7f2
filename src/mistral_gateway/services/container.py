"""Builds every service from the settings: the one place where the object graph is wired, and where background
components are started and stopped together.

A background component has ``start()`` and ``stop()``, plain (a thread: the usage writer, the lease renewer) or
async (it lives on the caller's event loop: the job runner, whose jobs call the same engines and upstream clients
as requests). Both are idempotent and ``stop`` waits for the component to end. One lifecycle runs them all, on the
event loop of whoever serves: ``async with services.running(): ...`` (or ``await services.start()`` ...
``await services.stop()``) starts the usage writer, the lease renewer, components added with ``add_background``,
then the job workers (if ``run_embedded_worker``, or ``jobs=True``), and stops them in reverse order, then closes
the upstream clients. ``serve`` (the app's lifespan), ``worker`` and the tests all use it. CLI commands that only
read or write records never start it; ``close()`` releases the rest (and still writes queued usage).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio import CancelScope
from anyio.to_thread import run_sync

from mistral_gateway.config import Settings
from mistral_gateway.dotted import load_callable
from mistral_gateway.engines.base import ClassifierTrainerEngine
from mistral_gateway.engines.classifier_trainer import LocalClassifierTrainer
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.jobs import HandlerRegistry, JobRunner, RunnerOptions
from mistral_gateway.registry import Registry
from mistral_gateway.security.fetch import FetchPolicy, SafeFetcher
from mistral_gateway.security.signing import UrlSigner, load_or_create_secret
from mistral_gateway.services.agents import AgentService
from mistral_gateway.services.batch import BatchService
from mistral_gateway.services.batch_direct import build_batch_service
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.chat_audio import ChatAudio
from mistral_gateway.services.classifiers import ClassifierService
from mistral_gateway.services.conversations import ConversationService
from mistral_gateway.services.embeddings import EmbeddingService
from mistral_gateway.services.files import FileService
from mistral_gateway.services.fim import FimService
from mistral_gateway.services.fine_tuning import JOB_KIND, FineTuningService
from mistral_gateway.services.fine_tuning_deps import FineTuningDeps
from mistral_gateway.services.images import ImageLoader
from mistral_gateway.services.libraries import INGEST_KIND, LibraryLimits, LibraryService
from mistral_gateway.services.library_ingest import LibraryIngest
from mistral_gateway.services.library_search import LibrarySearch
from mistral_gateway.services.library_tool import KnownLibraries, LibraryTool
from mistral_gateway.services.limits import LimitService, make_limiter
from mistral_gateway.services.metrics import Metrics
from mistral_gateway.services.models import ModelCatalog, ModelService
from mistral_gateway.services.ocr import OcrLimits, OcrService
from mistral_gateway.services.readiness import Readiness
from mistral_gateway.services.realtime import RealtimeLimits, RealtimeService
from mistral_gateway.services.tokens import TokenService
from mistral_gateway.services.transcription import AudioLimits, TranscriptionService
from mistral_gateway.services.upstream_keys import UpstreamKeyStore
from mistral_gateway.services.usage import UsageLog
from mistral_gateway.storage.agents import AgentRepository
from mistral_gateway.storage.blobs import LocalBlobStore, ServerBlobStore
from mistral_gateway.storage.conversations import ConversationRepository
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import Epoch, FileEpoch
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.fine_tuning import FineTuningRepository
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.libraries import DocumentRecord, LibraryRepository
from mistral_gateway.storage.library_index import ChunkIndex, open_library_index
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.permissions import secure_data_dir
from mistral_gateway.storage.redis_conn import RedisLink
from mistral_gateway.storage.secrets import UpstreamSecretRepository
from mistral_gateway.storage.tokens import TokenRepository
from mistral_gateway.storage.usage import UsageRepository
from mistral_gateway.upstreams import Router, UpstreamClient, build_upstreams, passthrough_map

__all__ = ["Background", "Services", "build_services"]

log = logging.getLogger("mistral_gateway")


class Background(Protocol):
    """``start``/``stop`` plain (a thread) or both async (a component living on the serving event loop)."""

    def start(self) -> Any: ...

    def stop(self) -> Any: ...


@dataclass
class Services:
    settings: Settings
    registry: Registry
    db: Database
    blobs: ServerBlobStore
    tokens: TokenService
    files: FileService
    models: ModelService
    fine_tuned: FineTunedModelRepository
    engines: EngineManager
    chat: ChatService
    fim: FimService
    embeddings: EmbeddingService
    classifiers: ClassifierService
    ocr: OcrService
    transcription: TranscriptionService
    limits: LimitService
    usage: UsageLog
    jobs: JobRepository
    job_runner: JobRunner  # run by the lifecycle when run_embedded_worker is on, and by `mistral-gateway worker`
    metrics: Metrics = field(default_factory=Metrics)  # Prometheus metrics (GET /metrics)
    router: Router = field(default_factory=lambda: Router({}))
    passthrough: dict[str, UpstreamClient] = field(default_factory=dict)  # workspace name -> upstream
    batch: BatchService | None = None
    fetcher: SafeFetcher | None = None  # the one fetcher for URLs named in requests (security/fetch.py)
    realtime: RealtimeService | None = None  # realtime transcription sessions (WebSocket)
    agents: AgentService | None = None  # stored agents and their versions (also the conversations' AgentLookup)
    conversations: ConversationService | None = None
    fine_tuning: FineTuningService | None = None  # fine-tuning jobs (README "Fine-tuning")
    # the classifier jobs' trainer: worker processes the jobs API drives; they outlive a server that stops (a
    # restarted one reads them from their run directories). None: classifier jobs fail with a clear reason
    classifier_trainer: ClassifierTrainerEngine | None = None
    libraries: LibraryService | None = None  # libraries and documents (README "Libraries")
    library_search: LibrarySearch | None = None  # what the document_library tool retrieves with
    redis: RedisLink | None = None  # with redis_url: limits, change notices, job wake-ups; ``redis.ping()``
    # named checks GET /ready runs (database, blob store, and Redis when configured)
    readiness: Readiness = field(default_factory=lambda: Readiness(2.0))
    background: list[Background] = field(default_factory=list)  # joined with ``add_background``
    running_now: list[Background] = field(default_factory=list)  # started by ``start``, in order

    @property
    def started(self) -> bool:
        return bool(self.running_now)

    def add_background(self, component: Background) -> None:
        """A component started and stopped with the others (a plain one is started at once if they already run)."""
        if self.started and inspect.iscoroutinefunction(component.start):
            raise ValueError("add async background components before the services start")
        self.background.append(component)
        if self.started:
            component.start()
            self.running_now.append(component)

    async def start(self, *, jobs: bool | None = None) -> None:
        """Start every background component, in order, on this event loop (idempotent). ``jobs``: run the job
        workers here (default: ``settings.run_embedded_worker``)."""
        if self.started:
            return
        run_jobs = self.settings.run_embedded_worker if jobs is None else jobs
        for component in [self.usage, self.limits, *self.background, *([self.job_runner] if run_jobs else [])]:
            self.running_now.append(component)  # before it starts: a half-started one is stopped too
            if inspect.iscoroutinefunction(component.start):
                await component.start()
            else:
                component.start()

    async def stop(self) -> None:
        """Stop what ``start`` started, in reverse order (job workers first: their jobs finish or go back to the
        queue while usage and limits still run), then close the upstream clients. Each gets its turn even if
        another fails, and even when the caller is being cancelled."""
        with CancelScope(shield=True):
            while self.running_now:
                component = self.running_now.pop()
                try:
                    if inspect.iscoroutinefunction(component.stop):
                        await component.stop()
                    else:
                        await run_sync(component.stop)  # joins a thread: not on the event loop
                except Exception:
                    log.exception("stopping %s failed", type(component).__name__)
            await self.router.aclose()

    @asynccontextmanager
    async def running(self, *, jobs: bool | None = None) -> AsyncIterator[Services]:
        """``start`` … ``stop`` around a block: what ``serve``, ``worker`` and tests run inside."""
        try:
            await self.start(jobs=jobs)
            yield self
        finally:
            await self.stop()

    def close(self) -> None:
        """Release everything (after ``stop``; plain components still running are stopped here)."""
        for component in reversed(self.running_now):
            if inspect.iscoroutinefunction(component.stop):
                log.warning("%s still runs: its services were closed without awaiting stop()",
                            type(component).__name__)
            else:
                component.stop()
        self.running_now.clear()
        self.engines.close()
        if self.libraries is not None:
            self.libraries.index.close()
        self.limits.close()
        if self.redis is not None:
            self.redis.close()
        self.usage.close()  # writes the records still queued
        self.db.dispose()


def build_services(settings: Settings, registry: Registry | None = None, *, migrate: bool = True) -> Services:
    registry = registry or Registry.load()
    secure_data_dir(settings.data_dir)  # 0700, and an older version's 0755/0644 data dir repaired
    db = Database(settings.sqlalchemy_url)
    if migrate:
        db.migrate()
    blobs = build_blob_store(settings)
    redis = open_redis(settings)
    secret = (settings.signing_secret.encode("utf-8") if settings.signing_secret
              else load_or_create_secret(settings.data_dir / "signing.key"))
    tokens = TokenService(
        TokenRepository(db),
        change_epoch(settings, "tokens", redis),
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
        presign=_presign(settings, blobs),
    )
    fine_tuned = FineTunedModelRepository(db, change_epoch(settings, "models", redis))
    catalog = ModelCatalog(settings.models, None if settings.model_family_defaults else [], settings.model_families)
    engines = EngineManager(settings)
    models = ModelService(catalog, fine_tuned, data_dir=settings.data_dir, engines=engines,
                          cache_seconds=settings.models_cache_seconds)
    jobs = JobRepository(db, max_attempts=settings.job_max_attempts)
    metrics = Metrics(queue_depth=jobs.queued_by_kind, engine_slots=engines.slot_usage)
    upstream_keys = UpstreamKeyStore(UpstreamSecretRepository(db), settings)
    upstreams = build_upstreams(settings, keys=upstream_keys.load() if settings.upstreams else None,
                                on_failure=metrics.upstream_failure)
    limits = LimitService(make_limiter(settings, db, redis), workspaces=settings.workspaces,
                          default=settings.default_token_limits, fail_open=settings.redis_failure_mode == "open",
                          clock=load_callable(settings.limits_clock, "limits_clock") if settings.limits_clock
                          else time.time)
    usage = UsageLog(UsageRepository(db), flush_seconds=settings.usage_flush_seconds)
    fetcher = SafeFetcher(FetchPolicy.from_settings(settings))  # every URL a request names is read through it
    images = ImageLoader.from_settings(settings, fetcher)
    job_runner = JobRunner(jobs, HandlerRegistry(settings.job_handlers), RunnerOptions.from_settings(settings),
                           observe=metrics.job, announce=(lambda: redis.bus.publish("jobs")) if redis else None)
    transcription = TranscriptionService(models.catalog, engines, files, AudioLimits.from_settings(settings),
                                         fetcher=fetcher)
    chat = ChatService(models.catalog, engines, reasoning=settings.reasoning, images=images,
                       audio=ChatAudio(models.catalog, transcription, settings.audio_chat_model))
    fim, embeddings = FimService(models.catalog, engines), EmbeddingService(models.catalog, engines, fine_tuned)
    # Lines run on the services directly until an Application takes them over (app.batch.route_batches): the
    # application layer imports this module, so it cannot be built here.
    batch = build_batch_service(db, blobs, models.catalog, chat, fim, embeddings, settings.max_json_body_bytes)
    batch.submit = lambda workspace_id, payload: job_runner.submit(workspace_id, "batch", payload)
    job_runner.handlers.register("batch", batch.handler)
    agents = AgentService(AgentRepository(db), models.catalog, max_agents=settings.max_agents_per_workspace,
                          models=models.resolve)
    batch.agents, batch.models = agents, models.resolve
    fine_tuning = build_fine_tuning(settings, db, blobs, models.catalog, fine_tuned, engines, jobs)
    fine_tuning.deps.submit = lambda workspace_id, payload, job_id: job_runner.submit(
        workspace_id, JOB_KIND, payload, job_id=job_id)
    job_runner.handlers.register(JOB_KIND, fine_tuning.handler)
    services = Services(settings=settings, registry=registry, db=db, blobs=blobs, tokens=tokens, files=files,
                    models=models, fine_tuned=fine_tuned, engines=engines, chat=chat, fim=fim, embeddings=embeddings,
                    classifiers=ClassifierService(models.catalog, engines), transcription=transcription,
                    ocr=OcrService(models.catalog, engines, files, chat, OcrLimits.from_settings(settings), fetcher),
                    limits=limits, usage=usage, jobs=jobs, job_runner=job_runner, metrics=metrics,
                    router=Router(upstreams),
                    passthrough=passthrough_map(settings, upstreams), batch=batch, fetcher=fetcher,
                    realtime=RealtimeService(models.catalog, engines, RealtimeLimits.from_settings(settings)),
                    agents=agents, conversations=ConversationService(ConversationRepository(db), agents=agents),
                    fine_tuning=fine_tuning,
                    classifier_trainer=LocalClassifierTrainer(settings,
                                                              threads=settings.classifier_training_threads))
    fine_tuning.deps.classifier_trainer = lambda: services.classifier_trainer  # read per job: set it any time
    services.readiness = Readiness(settings.readiness_timeout_seconds)
    services.readiness.add("database", db.ping)
    services.readiness.add("blobs", blobs.probe)
    if redis is not None:
        services.redis = redis
        redis.bus.on("jobs", job_runner.notify)  # a job enqueued elsewhere: claim now, not at the next poll
        services.add_background(redis.bus)
        services.readiness.add("redis", redis.probe)
    wire_libraries(services, open_library_index(settings))
    return services


def wire_libraries(services: Services, index: ChunkIndex) -> None:
    """The libraries service, its ingestion jobs and its retrieval, over ``index``. Chunks are embedded with the
    ``library_embedding_model`` (a local embedding model); PDFs and images are read by the OCR model."""
    settings, embeddings = services.settings, services.embeddings
    repo, token_repo = LibraryRepository(services.db), TokenRepository(services.db)
    libraries = LibraryService(repo, services.blobs, index, services.jobs, LibraryLimits.from_settings(settings),
                               notify=services.job_runner.enqueued)

    async def embed(texts: list[str]) -> Any:
        return await embeddings.vectors(settings.library_embedding_model, texts)

    async def ocr() -> Any:
        from mistral_gateway.protocol.ocr import DEFAULT_OCR_MODEL
        return await services.ocr.engine(DEFAULT_OCR_MODEL)

    def record_usage(document: DocumentRecord, used: int, started: float) -> None:
        """Processing is billed like an embeddings request of the uploader's token (operation ``library_ingest``)."""
        token = token_repo.by_id(document.uploaded_by_id) if document.uploaded_by_id else None
        services.usage.record_row((
            int(started), document.uploaded_by_id or "", document.workspace_id,
            token.workspace_name if token else document.workspace_id, INGEST_KIND, settings.library_embedding_model,
            "local", "job", 200, round((time.time() - started) * 1000, 3), used, 0))

    ingest = LibraryIngest(repo, services.blobs, index, embed, ocr, settings.library_max_pages, record_usage)
    services.job_runner.handlers.register(INGEST_KIND, ingest.handler)
    services.libraries = libraries
    services.library_search = LibrarySearch(repo, index, embed, settings.library_top_k)
    wire_library_tool(services, lambda workspace_id, ids: {lib.id for lib in repo.libraries(workspace_id, ids)})


def wire_library_tool(services: Services, known: KnownLibraries) -> None:
    """Agents check the library ids of their document_library tools; conversations run the tool with
    ``library_search`` (tests that swap either service call this again)."""
    if services.agents is not None:
        services.agents.libraries = known
    if services.conversations is not None and services.library_search is not None:
        services.conversations.runner.libraries = LibraryTool(services.library_search, known)


def open_redis(settings: Settings) -> RedisLink | None:
    """The Redis link when ``redis_url`` is set: one client with short timeouts for limits and publishing, and one
    for the notice bus's blocking reads (a periodic PING finds a dead connection)."""
    if settings.redis_url is None:
        return None
    from mistral_gateway.storage.redis_bus import RedisBus
    from mistral_gateway.storage.redis_conn import Breaker, connect

    url, timeout = settings.redis_url.get_secret_value(), settings.redis_timeout_seconds
    client = connect(url, timeout=timeout)
    subscriber = connect(url, timeout=timeout, socket_timeout=max(10.0, timeout), health_check_interval=5)
    breaker = Breaker(settings.redis_breaker_seconds)
    return RedisLink(client, breaker, RedisBus(client, prefix=settings.redis_key_prefix, breaker=breaker,
                                               subscriber=subscriber))


def change_epoch(settings: Settings, name: str, redis: RedisLink | None) -> Epoch:
    """``<data_dir>/<name>.epoch``, moved by this node's processes; with Redis, by every replica's as well."""
    local = FileEpoch(settings.data_dir / f"{name}.epoch")
    if redis is None:
        return local
    from mistral_gateway.storage.redis_bus import SharedEpoch

    return SharedEpoch(local, redis.bus, name)


def build_blob_store(settings: Settings) -> ServerBlobStore:
    if settings.blob_store == "local":
        return LocalBlobStore(settings.blob_dir)
    from mistral_gateway.storage.blobs_s3 import S3BlobStore, S3Config  # boto3: the optional `s3` extra

    assert settings.s3_bucket is not None  # Settings refuses blob_store = "s3" without one
    secret = settings.s3_secret_access_key
    return S3BlobStore(S3Config(
        bucket=settings.s3_bucket, prefix=settings.s3_prefix, endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region, access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None, part_size=settings.s3_part_size))


def _presign(settings: Settings, blobs: ServerBlobStore) -> Callable[[str, int, str], str] | None:
    from mistral_gateway.storage.blobs_s3 import S3BlobStore

    if settings.s3_presigned_downloads and isinstance(blobs, S3BlobStore):
        return blobs.presigned_url
    return None


def build_fine_tuning(settings: Settings, db: Database, blobs: ServerBlobStore, catalog: ModelCatalog,
                      fine_tuned: FineTunedModelRepository, engines: EngineManager,
                      jobs: JobRepository) -> FineTuningService:
    """Completion jobs train with the local LoRA trainer (a worker process each); classifier jobs with
    ``Services.classifier_trainer`` (until one is set they fail saying so). Tests replace the engines with fakes."""
    from mistral_gateway.engines.trainer import LocalTrainer
    from mistral_gateway.training.base_tokenizer import base_tokenizer
    from mistral_gateway.training.lora_merge import merge_adapter

    bases = settings.data_dir / "training" / "bases"
    deps = FineTuningDeps(
        repo=FineTuningRepository(db), files=FileRepository(db), blobs=blobs, catalog=catalog, models=fine_tuned,
        data_dir=settings.data_dir, trainer=LocalTrainer(),
        tokenizer=lambda gguf: base_tokenizer(gguf, bases, settings.fine_tuning_threads), locate=engines.weights,
        merge=merge_adapter, jobs=jobs, encoder=settings.fine_tuning_classifier_encoder,
        threads=settings.fine_tuning_threads, poll_seconds=settings.fine_tuning_poll_seconds,
        max_resumes=settings.fine_tuning_max_resumes)
    return FineTuningService(deps)
