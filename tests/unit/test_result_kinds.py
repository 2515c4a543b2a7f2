"""app.kinds: an operation whose declared results do not fit its registry row is refused at startup, not met by the
request that gets the odd result."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mistral_gateway.app import Application, BinaryResult, NoContent, RawEvents, RawJSON, StreamResult
from mistral_gateway.app.context import Context
from mistral_gateway.app.kinds import check_operations, result_problems
from mistral_gateway.app.operations import OPERATIONS
from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.chat import ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.files import ListFilesOut, RetrieveFileOut
from mistral_gateway.protocol.models import BaseModelCard, FTModelCard
from mistral_gateway.registry import Registry
from mistral_gateway.registry.spec import load_spec
from mistral_gateway.services.container import build_services


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


async def raw_json(ctx: Context, _: None) -> RawJSON: ...
async def binary(ctx: Context, _: None) -> BinaryResult: ...
async def nothing(ctx: Context, _: None) -> NoContent: ...
async def listing(ctx: Context, _: None) -> ListFilesOut: ...
async def card(ctx: Context, _: None) -> BaseModelCard | FTModelCard: ...
async def file_out(ctx: Context, _: None) -> RetrieveFileOut: ...
async def completion(ctx: Context, _: None) -> ChatCompletionResponse | StreamResult[CompletionChunk] | RawEvents: ...
async def unstreamed(ctx: Context, _: None) -> ChatCompletionResponse | RawJSON: ...
async def other_chunks(ctx: Context, _: None) -> StreamResult[ListFilesOut]: ...
async def bare_stream(ctx: Context, _: None) -> StreamResult: ...  # type: ignore[type-arg]
async def relayed(ctx: Context, _: None) -> RawEvents: ...
async def anything(ctx: Context, _: None) -> Any: ...
async def a_dict(ctx: Context, _: None) -> dict[str, Any]: ...
async def undeclared(ctx, _): ...  # type: ignore[no-untyped-def]


@pytest.mark.parametrize(("op_id", "work"), [
    ("list_available_models", raw_json), ("list_files", listing), ("list_files", raw_json),
    ("retrieve_model", card), ("download_file", binary), ("create_chat_completions", completion),
    ("create_chat_completions", unstreamed), ("create_fim_completions", completion),
])
def test_results_that_fit_their_row(registry: Registry, op_id: str, work: Any) -> None:
    assert result_problems(registry.get(op_id), work) == []


@pytest.mark.parametrize(("op_id", "work", "problem"), [
    ("download_file", raw_json, "(json) but the row's response_kind is 'binary'"),
    ("list_files", binary, "(binary) but the row's response_kind is 'json'"),
    ("list_files", nothing, "(empty) but the row's response_kind is 'json'"),
    ("list_files", file_out, "the row's response model is ListFilesOut"),
    ("retrieve_model", listing, "the row's response model is"),
    ("list_files", relayed, "returns RawEvents but the row does not stream"),
    ("create_embeddings", relayed, "the row does not stream"),
    ("create_chat_completions", other_chunks, "streams ListFilesOut chunks, the row's chunk model is CompletionChunk"),
    ("create_chat_completions", bare_stream, "streams None chunks"),
    ("create_streaming_transcription", raw_json, "returns RawJSON but the row always streams"),
    ("list_files", anything, "which is no result type"),
    ("list_files", a_dict, "which is no result type"),
    ("list_files", undeclared, "declares no return type"),
])
def test_results_that_do_not_fit_their_row(registry: Registry, op_id: str, work: Any, problem: str) -> None:
    problems = result_problems(registry.get(op_id), work)
    assert len(problems) == 1 and problems[0].startswith(f"{op_id}: ") and problem in problems[0], problems


def test_the_shipped_operations_fit_the_registry_exactly(registry: Registry) -> None:
    check_operations(registry, OPERATIONS)
    with pytest.raises(ValueError, match=r"rows marked implemented have no operation: \['list_files'\]"):
        check_operations(registry, {k: v for k, v in OPERATIONS.items() if k != "list_files"})
    unbuilt = Registry(tuple(dataclasses.replace(op, implemented=False) if op.id == "create_library" else op
                             for op in registry), load_spec())
    with pytest.raises(ValueError, match=r"operations without an implemented registry row: \['create_library'\]"):
        check_operations(unbuilt, OPERATIONS)
    with pytest.raises(ValueError, match=r"operations without an implemented registry row: \['no_such_op'\]"):
        check_operations(registry, {**OPERATIONS, "no_such_op": raw_json})


def test_a_mismatch_stops_the_application_and_the_server_at_startup(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="download_file: returns RawJSON"):
        Application(SimpleNamespace(registry=registry), {**OPERATIONS, "download_file": raw_json})  # type: ignore[arg-type]
    services = build_services(Settings(data_dir=tmp_path, bootstrap_dev_token=False))
    try:
        services.registry = Registry(tuple(dataclasses.replace(op, response_kind="empty") if op.id == "list_files"
                                           else op for op in registry), load_spec())
        with pytest.raises(ValueError, match=r"list_files: returns ListFilesOut \(json\) but the row's "
                                             r"response_kind is 'empty'"):
            create_app(services=services)
    finally:
        services.close()
