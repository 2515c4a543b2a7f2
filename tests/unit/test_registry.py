"""registry: the 55 operations of the seed (and the extras after them), enriched with parameters from Mistral's
spec."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mistral_gateway.app.operations import OPERATIONS as APP_OPERATIONS
from mistral_gateway.http.handlers import standard
from mistral_gateway.http.handlers.registry import HANDLERS, bind
from mistral_gateway.registry import CATEGORY_SCOPES, Operation, Registry
from mistral_gateway.registry.spec import load_spec
from mistral_gateway.registry.table import OPERATIONS

# The seed's "Complete Endpoint Reference" table, verbatim and in order: (name, method, category).
SEED = [
    ("Create FIM Completions", "POST", "Chat"),
    ("Create Chat Completions", "POST", "Chat"),
    ("Create Embeddings", "POST", "Embeddings"),
    ("List Files", "GET", "Files"),
    ("Upload File", "POST", "Files"),
    ("Retrieve File", "GET", "Files"),
    ("Delete File", "DELETE", "Files"),
    ("Download File", "GET", "Files"),
    ("Get Signed Url", "GET", "Files"),
    ("List Fine Tuning Jobs", "GET", "Fine Tuning"),
    ("Cancel Fine Tuning Job", "POST", "Fine Tuning"),
    ("Start Fine Tuning Job", "POST", "Fine Tuning"),
    ("Get Fine Tuning Job", "GET", "Fine Tuning"),
    ("Update Fine Tuned Model", "PATCH", "Fine Tuning"),
    ("Archive Fine Tuned Model", "POST", "Fine Tuning"),
    ("Unarchive Fine Tuned Model", "DELETE", "Fine Tuning"),
    ("List Available Models", "GET", "Models"),
    ("Retrieve Model", "GET", "Models"),
    ("Delete Model", "DELETE", "Models"),
    ("Create Fine Tuning Job", "POST", "Fine Tuning"),
    ("Create Batch Job", "POST", "Batch"),
    ("Get Batch Job", "GET", "Batch"),
    ("Get Batch Jobs", "GET", "Batch"),
    ("Cancel Batch Job", "POST", "Batch"),
    ("Create Agent", "POST", "Agents"),
    ("List Agents", "GET", "Agents"),
    ("Get Agent", "GET", "Agents"),
    ("Update Agent", "PATCH", "Agents"),
    ("Delete Agent", "DELETE", "Agents"),
    ("Update Agent Version", "PATCH", "Agents"),
    ("Create Agent Completion", "POST", "Agents"),
    ("Moderations", "POST", "Moderation"),
    ("Chat Moderations", "POST", "Moderation"),
    ("Classifications", "POST", "Classification"),
    ("Chat Classifications", "POST", "Classification"),
    ("OCR", "POST", "OCR"),
    ("Create Transcription", "POST", "Audio"),
    ("Create Streaming Transcription", "POST", "Audio"),
    ("Create Conversation", "POST", "Conversations"),
    ("List Conversations", "GET", "Conversations"),
    ("Get Conversation", "GET", "Conversations"),
    ("Update Conversation", "POST", "Conversations"),
    ("Delete Conversation", "DELETE", "Conversations"),
    ("Get Conversation History", "GET", "Conversations"),
    ("Get Conversation Messages", "GET", "Conversations"),
    ("Restart Conversation", "POST", "Conversations"),
    ("List Libraries", "GET", "Libraries"),
    ("Create Library", "POST", "Libraries"),
    ("Get Library", "GET", "Libraries"),
    ("Update Library", "PUT", "Libraries"),
    ("Delete Library", "DELETE", "Libraries"),
    ("List Library Documents", "GET", "Libraries"),
    ("Create Library Document", "POST", "Libraries"),
    ("Get Library Document", "GET", "Libraries"),
    ("Delete Library Document", "DELETE", "Libraries"),
]

# Paths the seed spells out in its "Common Endpoints" section.
SEED_PATHS = {
    "Create FIM Completions": "/v1/fim/completions",
    "Create Chat Completions": "/v1/chat/completions",
    "Create Embeddings": "/v1/embeddings",
    "List Files": "/v1/files",
    "Upload File": "/v1/files",
    "Retrieve File": "/v1/files/{file_id}",
    "Delete File": "/v1/files/{file_id}",
    "Download File": "/v1/files/{file_id}/content",
    "Get Signed Url": "/v1/files/{file_id}/url",
    "List Fine Tuning Jobs": "/v1/fine_tuning/jobs",
}

_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


# Spec operations served beyond the seed (the official SDK's libraries example calls them): after the seed's rows.
EXTRAS = {
    "update_library_document": ("PUT", "/v1/libraries/{library_id}/documents/{document_id}",
                                "libraries_documents_update_v1"),
    "get_library_document_text_content": ("GET", "/v1/libraries/{library_id}/documents/{document_id}/text_content",
                                          "libraries_documents_get_text_content_v1"),
    "get_library_document_status": ("GET", "/v1/libraries/{library_id}/documents/{document_id}/status",
                                    "libraries_documents_get_status_v1"),
    "reprocess_library_document": ("POST", "/v1/libraries/{library_id}/documents/{document_id}/reprocess",
                                   "libraries_documents_reprocess_v1"),
}


def test_exactly_55_seed_operations(registry: Registry) -> None:
    assert len(SEED) == 55
    assert len(registry.seed) == 55
    assert len(registry) == len(list(registry)) == 55 + len(EXTRAS)


def test_names_methods_categories_match_the_seed_in_order(registry: Registry) -> None:
    assert [(op.name, op.method, op.category) for op in registry.seed] == SEED
    assert list(registry)[:55] == list(registry.seed)  # the extras come after the seed's rows


def test_extras_are_spec_operations_outside_the_seed(registry: Registry) -> None:
    assert {op.id: (op.method, op.path, op.operation_id) for op in registry.extras} == EXTRAS
    assert not {op.name for op in registry.extras} & {name for name, _, _ in SEED}
    assert all(op.implemented and op.category == "Libraries" for op in registry.extras)
    assert registry.get("reprocess_library_document").status == 204
    update = {p.name: p for p in registry.get("update_library_document").body_params}
    assert set(update) == {"name", "attributes"}


def test_seed_paths(registry: Registry) -> None:
    by_name = {op.name: op for op in registry}
    for name, path in SEED_PATHS.items():
        assert by_name[name].path == path, name


def test_ids_unique_snake_case(registry: Registry) -> None:
    ids = [op.id for op in registry]
    assert len(set(ids)) == len(registry)
    for op_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", op_id), op_id


def test_operation_ids_unique(registry: Registry) -> None:
    assert len({op.operation_id for op in registry}) == len(registry)


def test_get_by_id(registry: Registry) -> None:
    op = registry.get("retrieve_file")
    assert op.name == "Retrieve File"
    assert op.path == "/v1/files/{file_id}"
    with pytest.raises(KeyError):
        registry.get("no_such_operation")


def test_duplicate_ids_rejected() -> None:
    dup = (*OPERATIONS, dataclasses.replace(OPERATIONS[0], name="Again"))
    with pytest.raises(ValueError, match="duplicate operation id"):
        Registry(dup, load_spec())


def test_every_operation_id_is_in_the_spec_subset(registry: Registry) -> None:
    for op in registry:
        assert op.operation_id in registry.spec.operations, op.id
        entry = registry.spec.operations[op.operation_id]
        assert entry["method"].upper() == op.method, op.id
        # the spec subset keys the streaming twin as "<path>#stream"
        assert entry["path"].split("#", 1)[0] == op.path, op.id


def test_path_params_match_the_path_template(registry: Registry) -> None:
    for op in registry:
        in_template = _PARAM.findall(op.path)
        assert sorted(p.name for p in op.path_params) == sorted(in_template), op.id
        for param in op.path_params:
            assert "{" + param.name + "}" in op.path, (op.id, param.name)
            assert param.location == "path"
            assert param.required, (op.id, param.name)
        for param in op.query_params:
            assert param.location == "query"
        for param in op.body_params:
            assert param.location == "body"


def test_params_derived_from_spec(registry: Registry) -> None:
    signed = registry.get("get_signed_url")
    assert [p.name for p in signed.path_params] == ["file_id"]
    assert signed.path_params[0].type == "string"
    expiry = {p.name: p for p in signed.query_params}["expiry"]
    assert expiry.type == "integer"

    upload = {p.name: p for p in registry.get("upload_file").body_params}
    assert upload["file"].type == "file"
    assert upload["file"].required
    assert "purpose" in upload

    chat = {p.name: p for p in registry.get("create_chat_completions").body_params}
    assert chat["model"].required
    assert chat["messages"].type == "array"
    assert chat["messages"].required
    assert chat["stream"].type == "boolean"
    assert chat["stream"].default is False

    jobs = {p.name: p for p in registry.get("list_fine_tuning_jobs").query_params}
    seed_query = {"created_after", "created_by_me", "model", "page", "page_size", "status", "suffix",
                  "wandb_name", "wandb_project"}
    assert seed_query <= set(jobs)
    assert jobs["page"].type == "integer"
    assert jobs["created_by_me"].type == "boolean"


def test_bodyless_operations_have_no_body_params(registry: Registry) -> None:
    for op in registry:
        if op.method in ("GET", "DELETE"):
            assert op.body == "none", op.id


def test_scopes_are_per_category(registry: Registry) -> None:
    for op in registry:
        assert op.scope == CATEGORY_SCOPES[op.category]
    assert set(registry.scopes) == set(CATEGORY_SCOPES.values())
    assert len(registry.scopes) == len(set(registry.scopes))
    assert {op.category for op in registry} == set(CATEGORY_SCOPES)


def test_twins_share_method_and_path(registry: Registry) -> None:
    plain = registry.get("create_transcription")
    stream = registry.get("create_streaming_transcription")
    assert plain.twin == stream.id
    assert stream.twin == plain.id
    assert (plain.method, plain.path) == (stream.method, stream.path) == ("POST", "/v1/audio/transcriptions")
    assert stream.stream == "always"
    assert plain.stream != "always"
    twins = [op for op in registry if op.twin]
    assert {op.id for op in twins} == {plain.id, stream.id}


def test_method_path_pairs_unique_apart_from_twins(registry: Registry) -> None:
    seen: dict[tuple[str, str], str] = {}
    for op in registry:
        key = (op.method, op.path)
        if key in seen:
            assert registry.get(seen[key]).twin == op.id, (op.id, seen[key])
        seen[key] = op.id


def test_lowcode_paths(registry: Registry) -> None:
    op = registry.get("download_file")
    assert op.lowcode_path == "/mistralai/v1/files/{file_id}/content"
    assert op.old_format_path == "/mistralai/v1/files/file_id/content"
    doc = registry.get("get_library_document")
    assert doc.old_format_path == "/mistralai/v1/libraries/library_id/documents/document_id"
    chat = registry.get("create_chat_completions")
    assert chat.lowcode_path == chat.old_format_path == "/mistralai/v1/chat/completions"


def test_implemented_operations(registry: Registry) -> None:
    implemented = {op.id for op in registry if op.implemented}
    assert {"list_files", "upload_file", "retrieve_file", "delete_file", "download_file", "get_signed_url",
            "list_available_models", "retrieve_model", "delete_model"} <= implemented
    assert set(bind(registry, APP_OPERATIONS)) == implemented == set(APP_OPERATIONS)


def test_success_statuses(registry: Registry) -> None:
    statuses = {op.id: op.status for op in registry}
    assert statuses["create_library"] == 201
    assert statuses["delete_agent"] == 204
    assert statuses["list_files"] == 200
    assert set(statuses.values()) <= {200, 201, 204}


def test_operations_are_frozen(registry: Registry) -> None:
    op: Operation = registry.get("list_files")
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.path = "/x"  # type: ignore[misc]


def test_every_handler_binds_an_implemented_row(registry: Registry) -> None:
    handlers = bind(registry, APP_OPERATIONS)
    assert set(handlers) == {op.id for op in registry if op.implemented}
    assert handlers["upload_file"] is HANDLERS["upload_file"] and handlers["list_files"] is standard
    assert {op.id for op in registry if op.body == "multipart" and op.implemented} <= set(HANDLERS)

    def changed(op_id: str, **change: object) -> Registry:
        return Registry(tuple(dataclasses.replace(op, **change) if op.id == op_id else op for op in registry),
                        load_spec())

    with pytest.raises(ValueError, match="serve no implemented row"):  # a handler whose row says "not built"
        bind(changed("upload_file", implemented=False))
    with pytest.raises(ValueError, match=r"multipart rows \['create_library'\] need a handler"):
        bind(changed("create_library", body="multipart"))
    with pytest.raises(ValueError, match=r"rows \['create_library'\] have no application-layer operation"):
        bind(registry, {k: v for k, v in APP_OPERATIONS.items() if k != "create_library"})


def test_per_operation_facts_live_in_the_rows(registry: Registry) -> None:
    assert {op.id for op in registry.batchable} == {"create_chat_completions", "create_fim_completions",
                                                     "create_embeddings", "moderations", "chat_moderations",
                                                     "classifications", "chat_classifications", "ocr",
                                                     "create_transcription", "create_agent_completion"}
    assert registry.by_path("POST", "/v1/chat/completions") is registry.get("create_chat_completions")
    assert registry.by_path("post", "/v1/embeddings").batchable
    assert registry.by_path("POST", "/v1/audio/transcriptions").id == "create_transcription"  # twins: non-stream
    assert registry.by_path("GET", "/v1/nowhere") is None
    assert [op.id for op in registry if op.response_kind == "binary"] == ["download_file"]
    assert {op.id for op in registry if op.response_kind == "empty"} == {op.id for op in registry if op.status == 204}
    assert {op.id for op in registry if op.chunk is not None} == {"create_chat_completions", "create_fim_completions",
                                                                  "create_streaming_transcription",
                                                                  "create_agent_completion", "create_conversation",
                                                                  "update_conversation", "restart_conversation"}
    fim = registry.get("create_fim_completions")
    assert (fim.upstream, fim.path, fim.openai_path) == ("fim", "/v1/fim/completions", "/v1/completions")
    assert registry.get("get_library_document").path_param_names == ("library_id", "document_id")
    assert registry.get("list_files").client == "files.list"  # the naming rule
    assert registry.get("create_chat_completions").client == "chat.complete"  # the row's own name
    assert all(op.client for op in registry)
    assert len(registry.namespaces) == 14
