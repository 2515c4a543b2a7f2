"""dispatch: the route table built from the registry, and LowCodeAPI old/new-format path parameters."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from mistral_gateway.errors import BadRequest
from mistral_gateway.http.dispatch import RouteTable, resolve_old_format
from mistral_gateway.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="module")
def routes(registry: Registry) -> RouteTable:
    return RouteTable(registry)


def ops_by_method(routes: RouteTable, path: str) -> dict[str, str]:
    match = routes.match(path)
    assert match is not None, path
    return {method: op.id for method, op in match.methods.items()}


def test_every_registry_path_is_routable(routes: RouteTable, registry: Registry) -> None:
    for op in registry:
        concrete = op.path.replace("{", "X").replace("}", "")  # e.g. /v1/files/Xfile_id
        match = routes.match(concrete)
        assert match is not None, op.id
        assert match.template == op.path, op.id
        if op.stream != "always":
            assert match.methods[op.method] is op, op.id


def test_static_route_beats_param_route(routes: RouteTable) -> None:
    match = routes.match("/v1/agents/completions")
    assert match is not None
    assert match.template == "/v1/agents/completions"
    assert match.params == {}
    assert ops_by_method(routes, "/v1/agents/completions") == {"POST": "create_agent_completion"}


def test_param_route_captures_value(routes: RouteTable) -> None:
    match = routes.match("/v1/agents/ag_123")
    assert match is not None
    assert match.template == "/v1/agents/{agent_id}"
    assert match.params == {"agent_id": "ag_123"}
    assert ops_by_method(routes, "/v1/agents/ag_123") == {
        "GET": "get_agent", "PATCH": "update_agent", "DELETE": "delete_agent"}


def test_static_collection_vs_item(routes: RouteTable) -> None:
    assert ops_by_method(routes, "/v1/files") == {"GET": "list_files", "POST": "upload_file"}
    assert ops_by_method(routes, "/v1/files/abc") == {"GET": "retrieve_file", "DELETE": "delete_file"}
    assert ops_by_method(routes, "/v1/files/abc/content") == {"GET": "download_file"}
    assert ops_by_method(routes, "/v1/files/abc/url") == {"GET": "get_signed_url"}
    assert ops_by_method(routes, "/v1/batch/jobs") == {"GET": "get_batch_jobs", "POST": "create_batch_job"}
    assert ops_by_method(routes, "/v1/batch/jobs/j1/cancel") == {"POST": "cancel_batch_job"}


def test_multi_param_path(routes: RouteTable) -> None:
    match = routes.match("/v1/libraries/lib-1/documents/doc-2")
    assert match is not None
    assert match.template == "/v1/libraries/{library_id}/documents/{document_id}"
    assert match.params == {"library_id": "lib-1", "document_id": "doc-2"}
    assert set(match.methods) == {"GET", "PUT", "PATCH", "DELETE"}  # PUT (PATCH from the SDK 3.x): the update


def test_same_path_different_methods(routes: RouteTable) -> None:
    assert ops_by_method(routes, "/v1/fine_tuning/models/ft:m/archive") == {
        "POST": "archive_fine_tuned_model", "DELETE": "unarchive_fine_tuned_model"}


def test_twin_registers_the_non_stream_operation(routes: RouteTable) -> None:
    assert ops_by_method(routes, "/v1/audio/transcriptions") == {"POST": "create_transcription"}


@pytest.mark.parametrize("path", [
    "/v1/nope",
    "/v1/files/",
    "/v1/files/a/b",
    "/v1/files/a/content/extra",
    "v1/files",
    "/files",
    "/v1/libraries/l/documents/",
    "",
])
def test_unknown_paths(routes: RouteTable, path: str) -> None:
    assert routes.match(path) is None


def test_params_never_span_slashes(routes: RouteTable) -> None:
    match = routes.match("/v1/conversations/c1/history")
    assert match is not None
    assert match.template == "/v1/conversations/{conversation_id}/history"
    assert match.params == {"conversation_id": "c1"}


def test_regex_metacharacters_are_literal(routes: RouteTable) -> None:
    assert routes.match("/v1Xfiles") is None
    assert routes.match("/v1/fimXcompletions") is None


# -- resolve_old_format -----------------------------------------------------------------------------------


def resolve(registry: Registry, op_id: str, params: dict[str, str], query: dict[str, str] | QueryParams,
            *, allow_new: bool = True, allow_old: bool = True) -> tuple[dict[str, str], bool]:
    return resolve_old_format(registry.get(op_id), params, query, allow_new=allow_new,  # type: ignore[arg-type]
                              allow_old=allow_old)


def test_new_format(registry: Registry) -> None:
    assert resolve(registry, "retrieve_file", {"file_id": "abc"}, {}) == ({"file_id": "abc"}, False)


def test_old_format(registry: Registry) -> None:
    assert resolve(registry, "retrieve_file", {"file_id": "file_id"}, {"file_id": "abc"}) == ({"file_id": "abc"}, True)


def test_old_format_with_starlette_query_params(registry: Registry, routes: RouteTable) -> None:
    match = routes.match("/v1/files/file_id/content")
    assert match is not None
    query = QueryParams("api_token=at_x&file_id=3f1c")
    assert resolve(registry, "download_file", match.params, query) == ({"file_id": "3f1c"}, True)


def test_old_format_multi_param(registry: Registry) -> None:
    params = {"library_id": "library_id", "document_id": "document_id"}
    query = {"library_id": "L", "document_id": "D"}
    assert resolve(registry, "get_library_document", params, query) == ({"library_id": "L", "document_id": "D"},
                                                                         True)


def test_conflict_is_bad_request(registry: Registry) -> None:
    with pytest.raises(BadRequest) as info:
        resolve(registry, "retrieve_file", {"file_id": "abc"}, {"file_id": "xyz"})
    assert info.value.status == 400
    assert info.value.code == "CONFLICTING_PATH_PARAMETER"
    assert info.value.param == "file_id"


@pytest.mark.parametrize("query", [{}, {"file_id": ""}, {"other": "abc"}])
def test_old_format_missing_query_value(registry: Registry, query: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as info:
        resolve(registry, "retrieve_file", {"file_id": "file_id"}, query)
    assert info.value.status == 400
    assert info.value.code == "MISSING_PATH_PARAMETER"
    assert info.value.param == "file_id"


def test_same_value_in_path_and_query_is_fine(registry: Registry) -> None:
    assert resolve(registry, "retrieve_file", {"file_id": "abc"}, {"file_id": "abc"}) == ({"file_id": "abc"}, False)


def test_old_format_disabled(registry: Registry) -> None:
    with pytest.raises(BadRequest) as info:
        resolve(registry, "retrieve_file", {"file_id": "file_id"}, {"file_id": "abc"}, allow_old=False)
    assert info.value.code == "OLD_FORMAT_DISABLED"
    # the new format still works
    assert resolve(registry, "retrieve_file", {"file_id": "abc"}, {}, allow_old=False) == ({"file_id": "abc"}, False)


def test_new_format_disabled(registry: Registry) -> None:
    with pytest.raises(BadRequest) as info:
        resolve(registry, "retrieve_file", {"file_id": "abc"}, {}, allow_new=False)
    assert info.value.code == "NEW_FORMAT_DISABLED"
    # the old format still works
    assert resolve(registry, "retrieve_file", {"file_id": "file_id"}, {"file_id": "abc"}, allow_new=False) == (
        {"file_id": "abc"}, True)


def test_no_path_params_never_blocked(registry: Registry) -> None:
    assert resolve(registry, "list_files", {}, {}, allow_new=False, allow_old=False) == ({}, False)


def test_mixed_formats_resolve_both(registry: Registry) -> None:
    params = {"library_id": "library_id", "document_id": "D"}
    resolved, old = resolve(registry, "get_library_document", params, {"library_id": "L"})
    assert resolved == {"library_id": "L", "document_id": "D"}
    assert old is True
