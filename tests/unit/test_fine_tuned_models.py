"""services.fine_tuned: a workspace's fine-tuned models as servable entries (built from the base's settings or over
the head's encoder), the resolution cache (epoch and time), isolation, archived models, and the lifecycle
(update, archive, unarchive, delete with the artifact and the engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import ClassifierTarget
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec, save_head
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import BadRequest, Forbidden, GatewayError, NotFound
from mistral_gateway.protocol.fine_tuned_models import ClassifierFTModelOut, CompletionFTModelOut, UpdateFTModelIn
from mistral_gateway.protocol.models import FTModelCard, ListModelsQuery
from mistral_gateway.services.models import ModelCatalog, ModelService
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FineTunedModelRecord
from mistral_gateway.storage.tokens import TokenRepository

CHAT = ModelEntry(id="base-chat", aliases=["mistral-small-latest"], engine="fake", max_context_length=2048,
                  parallel=3, threads=2, fim_template="<pre>{prompt}<suf>{suffix}<mid>", default_model_temperature=0.2,
                  capabilities=["completion_chat", "completion_fim", "function_calling", "vision"])
EMBED = ModelEntry(id="all-minilm-l6-v2", aliases=["mistral-embed"], engine="fake", capabilities=[],
                   max_context_length=256)
OTHER_EMBED = ModelEntry(id="other-embed", engine="fake", capabilities=[], max_context_length=128)
JOB = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_backend() -> str:
    return "sqlite"  # the repository itself runs on PostgreSQL in test_storage_models


@pytest.fixture
def workspaces(db: Database) -> tuple[str, str]:
    tokens = TokenRepository(db)
    return tokens.ensure_workspace("a", now=1).id, tokens.ensure_workspace("b", now=1).id


class CountingRepo(FineTunedModelRepository):
    """The real repository, counting the reads resolution makes."""

    gets = 0

    def get(self, workspace_id: str, model_id: str) -> FineTunedModelRecord | None:
        self.gets += 1
        return super().get(workspace_id, model_id)


@pytest.fixture
def repo(db: Database, tmp_path: Path) -> CountingRepo:
    return CountingRepo(db, FileEpoch(tmp_path / "models.epoch"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def engines(tmp_path: Path) -> EngineManager:
    return EngineManager(Settings(data_dir=tmp_path / "engines", models=[CHAT, EMBED]))


def service(repo: CountingRepo, data_dir: Path, clock: Any, engines: EngineManager | None = None,
            entries: tuple[ModelEntry, ...] = (CHAT, EMBED)) -> ModelService:
    return ModelService(ModelCatalog(list(entries)), repo, data_dir=data_dir, engines=engines, cache_seconds=5,
                        clock=clock)


@pytest.fixture
def svc(repo: CountingRepo, data_dir: Path, clock: Any, engines: EngineManager) -> ModelService:
    return service(repo, data_dir, clock, engines)


def add(repo: FineTunedModelRepository, data_dir: Path, workspace_id: str, model_id: str = "ft:base-chat:x:1",
        *, root: str = "mistral-small-latest", artifact: str | None = "ft/model.gguf", job_type: str = "completion",
        write: bool = True, **kw: Any) -> FineTunedModelRecord:
    if artifact and write:
        (data_dir / artifact).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / artifact).write_bytes(b"GGUF")
    values: dict[str, Any] = dict(
        id=model_id, workspace_id=workspace_id, root=root, job_id=JOB, name="tuned", description="mine",
        archived=False, capabilities=("completion_chat",), max_context_length=1024, created_at=1234,
        job_type=job_type, artifact=artifact)
    values.update(kw)
    record = FineTunedModelRecord(**values)
    repo.add(record)
    return record


def write_head(path: Path, encoder: str = "sentence-transformers/all-MiniLM-L6-v2") -> None:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_head(ClassifierHead(
        encoder=EncoderInfo(encoder, 4, 256), features=(FeatureSpec("embedding", 4),),
        targets=(ClassifierTarget("sentiment", ("neg", "pos")),
                 ClassifierTarget("topics", ("a", "b", "c"), multi_label=True)),
        weights={"sentiment": rng.normal(size=(2, 4)).astype(np.float32),
                 "topics": rng.normal(size=(3, 4)).astype(np.float32)},
        biases={"sentiment": np.zeros(2, np.float32), "topics": np.zeros(3, np.float32)},
        thresholds={"a": 0.5, "b": 0.5, "c": 0.5}), path)


# -- resolution ---------------------------------------------------------------------------------------------------

def test_completion_entry_takes_the_base_settings(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                  workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add(repo, data_dir, a)
    entry = svc.resolve(a, "ft:base-chat:x:1")
    assert entry is not None
    assert (entry.id, entry.engine, entry.path) == ("ft:base-chat:x:1", "fake", str(data_dir / "ft/model.gguf"))
    assert (entry.max_context_length, entry.parallel, entry.threads) == (2048, 3, 2)
    assert entry.fim_template == CHAT.fim_template and entry.default_model_temperature == 0.2
    # what the fine-tuned weights serve: no projector is carried over (its base's was made for other weights)
    assert entry.capabilities == ["completion_chat", "completion_fim", "function_calling"]
    assert entry.mmproj is None and entry.aliases == [] and entry.routes == []


def test_completion_entry_without_its_base_in_the_catalog(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                          workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add(repo, data_dir, a, root="gone-model", capabilities=("completion_chat", "vision"))
    entry = svc.resolve(a, "ft:base-chat:x:1")
    assert entry is not None
    assert (entry.engine, entry.max_context_length, entry.capabilities) == ("llama.cpp", 1024, ["completion_chat"])


def write_adapter(path: Path) -> None:
    """A GGUF LoRA adapter as training/lora_export writes one (type adapter, lora alpha), with one small tensor."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 16.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((2, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_an_adapter_is_served_over_its_bases_weights(repo: CountingRepo, data_dir: Path, clock: Any,
                                                     workspaces: tuple[str, str]) -> None:
    pytest.importorskip("gguf")
    a, _ = workspaces
    write_adapter(data_dir / "ft/adapter.gguf")
    add(repo, data_dir, a, artifact="ft/adapter.gguf", write=False)
    add(repo, data_dir, a, "ft:plain", artifact="ft/model.gguf")  # whole weights (not a GGUF adapter): its own path
    local = CHAT.model_copy(update={"engine": "llama.cpp", "asset": "smollm2-135m-instruct-q8_0",
                                    "capabilities": ["completion_chat"]})
    svc = service(repo, data_dir, clock, entries=(local, EMBED))
    entry = svc.resolve(a, "ft:base-chat:x:1")
    assert entry is not None
    assert (entry.id, entry.engine, entry.asset, entry.path, entry.lora) == (
        "ft:base-chat:x:1", "llama.cpp", "smollm2-135m-instruct-q8_0", None, str(data_dir / "ft/adapter.gguf"))
    plain = svc.resolve(a, "ft:plain")
    assert plain is not None and (plain.path, plain.asset, plain.lora) == (str(data_dir / "ft/model.gguf"), None, None)
    # without its base in the catalog an adapter has nothing to apply to
    with pytest.raises(GatewayError) as info:
        service(repo, data_dir, clock, entries=(EMBED,)).resolve(a, "ft:base-chat:x:1")
    assert (info.value.status, info.value.code) == (503, "MODEL_BASE_MISSING")


def test_an_adapter_needs_llama_cpp() -> None:
    with pytest.raises(ValueError, match="LoRA adapter needs engine"):
        ModelEntry(id="x", engine="sentence-transformers", lora="/a.gguf")


def test_other_workspaces_models_do_not_resolve(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    add(repo, data_dir, a)
    assert svc.resolve(b, "ft:base-chat:x:1") is None
    assert svc.resolve(a, "ft:base-chat:x:1") is not None
    assert svc.resolve(a, "ft:nope") is None


def test_catalog_names_never_read_the_database(svc: ModelService, repo: CountingRepo,
                                               workspaces: tuple[str, str]) -> None:
    for name in ("base-chat", "mistral-small-latest", "mistral-embed"):
        entry = svc.resolve(workspaces[0], name)
        assert entry is not None and entry.id in ("base-chat", "all-minilm-l6-v2")
    assert repo.gets == 0


def test_resolutions_are_cached_until_the_epoch_moves_or_time_passes(
        svc: ModelService, repo: CountingRepo, data_dir: Path, workspaces: tuple[str, str], clock: Any) -> None:
    a, b = workspaces
    add(repo, data_dir, a)
    tuned = svc.fine_tuned
    assert tuned.cached(a, "ft:base-chat:x:1") is None  # nothing cached yet: the caller goes to resolve()
    first = svc.resolve(a, "ft:base-chat:x:1")
    assert svc.resolve(a, "ft:base-chat:x:1") == first
    assert svc.resolve(b, "ft:base-chat:x:1") is None
    assert svc.resolve(b, "ft:base-chat:x:1") is None  # misses are cached too
    assert repo.gets == 2
    hit = tuned.cached(a, "ft:base-chat:x:1")
    assert hit is not None and hit.entry == first
    clock.advance(6)  # another node may have changed it
    assert tuned.cached(a, "ft:base-chat:x:1") is None
    svc.resolve(a, "ft:base-chat:x:1")
    assert repo.gets == 3
    add(repo, data_dir, b, "ft:b")  # any write of this node drops every cached resolution
    assert tuned.cached(b, "ft:base-chat:x:1") is None
    assert svc.resolve(b, "ft:b") is not None
    assert repo.gets == 4


def test_an_overlong_name_is_no_fine_tuned_model(svc: ModelService, repo: CountingRepo,
                                                 workspaces: tuple[str, str]) -> None:
    assert svc.resolve(workspaces[0], "ft:" + "x" * 300) is None
    assert repo.gets == 0


def test_archived_models_refuse_with_how_to_unarchive(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                      workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add(repo, data_dir, a)
    assert svc.resolve(a, "ft:base-chat:x:1") is not None
    svc.fine_tuned.archive(a, "ft:base-chat:x:1")
    with pytest.raises(BadRequest) as info:
        svc.resolve(a, "ft:base-chat:x:1")
    assert info.value.code == "MODEL_ARCHIVED" and info.value.param == "model"
    assert "DELETE /v1/fine_tuning/models/ft:base-chat:x:1/archive" in info.value.message
    svc.fine_tuned.unarchive(a, "ft:base-chat:x:1")
    assert svc.resolve(a, "ft:base-chat:x:1") is not None


@pytest.mark.parametrize(("artifact", "write"), [(None, False), ("ft/missing.gguf", False), ("../outside.gguf", True),
                                                 ("/etc/passwd", False)])
def test_a_model_without_its_file_here_is_a_503(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                workspaces: tuple[str, str], artifact: str | None,
                                                write: bool) -> None:
    a, _ = workspaces
    add(repo, data_dir, a, artifact=artifact, write=write)
    with pytest.raises(GatewayError) as info:
        svc.resolve(a, "ft:base-chat:x:1")
    assert (info.value.status, info.value.code) == (503, "MODEL_ARTIFACT_MISSING")


@pytest.mark.parametrize(("root", "encoder", "catalog", "expected"), [
    ("mistral-embed", "whatever/else", (CHAT, EMBED, OTHER_EMBED), "all-minilm-l6-v2"),  # the job's base
    ("ministral-3b-latest", "sentence-transformers/all-MiniLM-L6-v2", (CHAT, OTHER_EMBED, EMBED), "all-minilm-l6-v2"),
    ("ministral-3b-latest", "other-embed", (CHAT, EMBED, OTHER_EMBED), "other-embed"),  # a catalog name in the head
    ("ministral-3b-latest", "unknown/model", (CHAT, OTHER_EMBED), "other-embed"),  # the catalog's only encoder
])
def test_classifier_entry_reads_over_the_heads_encoder(repo: CountingRepo, data_dir: Path, clock: Any,
                                                       workspaces: tuple[str, str], root: str, encoder: str,
                                                       catalog: tuple[ModelEntry, ...], expected: str) -> None:
    a, _ = workspaces
    write_head(data_dir / "ft/head.safetensors", encoder)
    add(repo, data_dir, a, "ft:classifier:x:1", root=root, artifact="ft/head.safetensors", job_type="classifier",
        write=False)
    entry = service(repo, data_dir, clock, entries=catalog).resolve(a, "ft:classifier:x:1")
    assert entry is not None
    assert (entry.encoder, entry.capabilities, entry.path) == (expected, ["classification"],
                                                               str(data_dir / "ft/head.safetensors"))
    assert entry.engine == "fake"  # its encoder is a fake: the fake classifier stands in


def test_classifier_without_a_known_encoder(repo: CountingRepo, data_dir: Path, clock: Any,
                                            workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    write_head(data_dir / "ft/head.safetensors", "unknown/model")
    add(repo, data_dir, a, "ft:classifier:x:1", root="ministral-3b-latest", artifact="ft/head.safetensors",
        job_type="classifier", write=False)
    with pytest.raises(GatewayError) as info:
        service(repo, data_dir, clock, entries=(CHAT, EMBED, OTHER_EMBED)).resolve(a, "ft:classifier:x:1")
    assert (info.value.status, info.value.code) == (503, "MODEL_ENCODER_MISSING")


def test_real_classifier_engine_for_a_real_encoder(repo: CountingRepo, data_dir: Path, clock: Any,
                                                   workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    write_head(data_dir / "ft/head.safetensors")
    add(repo, data_dir, a, "ft:classifier:x:1", root="mistral-embed", artifact="ft/head.safetensors",
        job_type="classifier", write=False)
    real = EMBED.model_copy(update={"engine": "sentence-transformers"})
    entry = service(repo, data_dir, clock, entries=(CHAT, real)).resolve(a, "ft:classifier:x:1")
    assert entry is not None and (entry.engine, entry.encoder, entry.max_context_length) == (
        "classifier", "all-minilm-l6-v2", 256)


# -- cards and listings -------------------------------------------------------------------------------------------

def test_cards_and_archived_listing(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                    workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add(repo, data_dir, a)
    write_head(data_dir / "ft/head.safetensors")
    add(repo, data_dir, a, "ft:classifier:x:1", root="mistral-embed", artifact="ft/head.safetensors",
        job_type="classifier", write=False, max_context_length=256)
    cards = {c.id: c for c in svc.list(a).data if isinstance(c, FTModelCard)}
    chat, classifier = cards["ft:base-chat:x:1"], cards["ft:classifier:x:1"]
    assert (chat.type, chat.job, chat.root, chat.archived, chat.max_context_length) == (
        "fine-tuned", JOB, "mistral-small-latest", False, 2048)
    assert chat.capabilities.completion_chat and chat.capabilities.completion_fim and not chat.capabilities.vision
    assert classifier.capabilities.classification and not classifier.capabilities.completion_chat
    svc.fine_tuned.archive(a, "ft:base-chat:x:1")
    assert "ft:base-chat:x:1" not in [c.id for c in svc.list(a).data]  # hidden from the default listing
    named = svc.list(a, ListModelsQuery(model="ft:base-chat:x:1")).data
    assert [(c.id, getattr(c, "archived", None)) for c in named] == [("ft:base-chat:x:1", True)]
    card = svc.retrieve(a, "ft:base-chat:x:1")
    assert isinstance(card, FTModelCard) and card.archived is True


# -- lifecycle ----------------------------------------------------------------------------------------------------

def test_update_name_and_description(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                     workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    add(repo, data_dir, a)
    tuned = svc.fine_tuned
    out = tuned.update(a, "ft:base-chat:x:1", UpdateFTModelIn(name="renamed"))
    assert isinstance(out, CompletionFTModelOut)
    assert (out.name, out.description, out.model_type, out.workspace_id, out.root_version) == (
        "renamed", "mine", "completion", a, "base-chat")
    assert out.capabilities.completion_fim is True and out.capabilities.classification is False
    out = tuned.update(a, "ft:base-chat:x:1", UpdateFTModelIn.model_validate({"description": None}))
    assert (out.name, out.description) == ("renamed", None)
    assert tuned.update(a, "ft:base-chat:x:1", UpdateFTModelIn()).name == "renamed"  # nothing sent: unchanged
    with pytest.raises(NotFound):
        tuned.update(b, "ft:base-chat:x:1", UpdateFTModelIn(name="theirs"))
    with pytest.raises(Forbidden) as info:
        tuned.update(a, "mistral-small-latest", UpdateFTModelIn(name="x"))
    assert info.value.code == "BASE_MODEL_NOT_MODIFIABLE"
    assert repo.get(a, "ft:base-chat:x:1").name == "renamed"  # type: ignore[union-attr]


def test_classifier_model_out_lists_the_heads_targets(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                      workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    write_head(data_dir / "ft/head.safetensors")
    add(repo, data_dir, a, "ft:classifier:x:1", root="mistral-embed", artifact="ft/head.safetensors",
        job_type="classifier", write=False)
    out = svc.fine_tuned.update(a, "ft:classifier:x:1", UpdateFTModelIn(description="sentiment and topics"))
    assert isinstance(out, ClassifierFTModelOut)
    assert out.model_type == "classifier" and out.capabilities.classification and not out.capabilities.completion_chat
    assert [(t.name, t.labels, t.loss_function) for t in out.classifier_targets] == [
        ("sentiment", ["neg", "pos"], "single_class"), ("topics", ["a", "b", "c"], "multi_class")]


@pytest.mark.parametrize("operation", ["archive", "unarchive"])
def test_archive_operations_are_workspace_scoped(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                                 workspaces: tuple[str, str], operation: str) -> None:
    a, b = workspaces
    add(repo, data_dir, a)
    with pytest.raises(NotFound):
        getattr(svc.fine_tuned, operation)(b, "ft:base-chat:x:1")
    with pytest.raises(Forbidden):
        getattr(svc.fine_tuned, operation)(a, "base-chat")
    out = getattr(svc.fine_tuned, operation)(a, "ft:base-chat:x:1")
    assert (out.id, out.object, out.archived) == ("ft:base-chat:x:1", "model", operation == "archive")
    assert getattr(svc.fine_tuned, operation)(a, "ft:base-chat:x:1").archived is (operation == "archive")  # idempotent


@pytest.mark.anyio
async def test_delete_removes_the_file_and_releases_the_engine(svc: ModelService, repo: CountingRepo,
                                                               data_dir: Path, engines: EngineManager,
                                                               workspaces: tuple[str, str]) -> None:
    a, b = workspaces
    add(repo, data_dir, a)
    (data_dir / "ft/progress.jsonl").write_text("{}\n")  # the job's own files stay
    entry = svc.resolve(a, "ft:base-chat:x:1")
    assert entry is not None
    await engines.text(entry)
    assert "ft:base-chat:x:1" in engines.loaded()
    with pytest.raises(NotFound):
        svc.delete(b, "ft:base-chat:x:1")
    assert (data_dir / "ft/model.gguf").exists()
    assert svc.delete(a, "ft:base-chat:x:1").deleted is True
    assert not (data_dir / "ft/model.gguf").exists()
    assert (data_dir / "ft/progress.jsonl").exists()
    assert "ft:base-chat:x:1" not in engines.loaded()
    assert svc.resolve(a, "ft:base-chat:x:1") is None


@pytest.mark.anyio
async def test_archive_releases_the_engine(svc: ModelService, repo: CountingRepo, data_dir: Path,
                                          engines: EngineManager, workspaces: tuple[str, str]) -> None:
    a, _ = workspaces
    add(repo, data_dir, a)
    entry = svc.resolve(a, "ft:base-chat:x:1")
    assert entry is not None
    await engines.text(entry)
    svc.fine_tuned.archive(a, "ft:base-chat:x:1")
    assert engines.loaded() == []
    svc.fine_tuned.unarchive(a, "ft:base-chat:x:1")
    again = svc.resolve(a, "ft:base-chat:x:1")
    assert again is not None
    await engines.text(again)  # loaded afresh
    assert engines.loaded() == ["ft:base-chat:x:1"]


@pytest.mark.anyio
async def test_a_load_that_spans_a_release_is_not_kept(tmp_path: Path) -> None:
    """Deleting a model while its engine loads: the loaded engine is closed, not kept for a model that is gone."""
    import threading

    from mistral_gateway.engines.base import EngineUnavailable
    from mistral_gateway.engines.fake import FakeTextEngine

    started, proceed, closed = threading.Event(), threading.Event(), []

    class Closable(FakeTextEngine):
        def close(self) -> None:
            closed.append(self)

    def slow(entry: ModelEntry, _path: Path | None, _settings: Settings) -> FakeTextEngine:
        started.set()
        proceed.wait(30)
        return Closable()

    manager = EngineManager(Settings(data_dir=tmp_path / "d", models=[CHAT]), loaders={("fake", "text"): slow})
    entry = CHAT.model_copy(update={"id": "ft:x"})

    def release_midway() -> None:  # as the API does it: on a worker thread, while the event loop awaits the load
        started.wait(30)
        released.append(manager.release("ft:x"))
        proceed.set()

    released: list[bool] = []
    thread = threading.Thread(target=release_midway)
    thread.start()
    with pytest.raises(EngineUnavailable, match="released while it loaded"):
        await manager.text(entry)
    thread.join()
    assert released == [False]  # nothing was loaded yet when it was released
    assert len(closed) == 1 and manager.loaded() == []
    assert isinstance(await manager.text(entry), Closable)  # a load after the release is kept
    assert manager.loaded() == ["ft:x"]
