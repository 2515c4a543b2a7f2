"""http.bodies: bounded body reading, JSON validation and query-string parsing with FastAPI-shaped errors."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from pydantic import Field, field_validator
from starlette.datastructures import QueryParams
from starlette.requests import Request

from mistral_gateway.errors import BadRequest, PayloadTooLarge, ValidationFailed
from mistral_gateway.http.bodies import parse_query, read_body, read_json
from mistral_gateway.protocol.common import RequestModel
from mistral_gateway.protocol.files import ListFilesQuery, SignedUrlQuery
from mistral_gateway.protocol.models import ListModelsQuery


class ChatBody(RequestModel):
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = Field(None, ge=0, le=2)
    stop: list[str] | None = None

    @field_validator("model")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if " " in value:
            raise ValueError("model names have no spaces")
        return value


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def json_request(make_request: Any, body: bytes, *, chunked: bool = False, length: str | None = "auto") -> Request:
    headers = {"content-type": "application/json"}
    if length == "auto":
        headers["content-length"] = str(len(body))
    elif length is not None:
        headers["content-length"] = length
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)] if chunked else [body]
    return make_request(chunks, headers=headers)


# -- read_body ---------------------------------------------------------------------------------------------


def test_read_body_joins_chunks(make_request: Any) -> None:
    req = make_request([b"ab", b"", b"cd", b"e"], headers={"content-length": "5"})
    assert run(read_body(req, 5)) == b"abcde"


def test_read_body_empty(make_request: Any) -> None:
    assert run(read_body(make_request([]), 10)) == b""


def test_declared_length_over_limit_is_rejected_before_reading() -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-length", b"11")]}
    with pytest.raises(PayloadTooLarge) as info:
        run(read_body(Request(scope, receive), 10))
    assert info.value.status == 413


def test_streamed_body_over_limit(make_request: Any) -> None:
    req = make_request([b"x" * 6, b"x" * 6], headers={})  # no Content-Length: counted while streaming
    with pytest.raises(PayloadTooLarge):
        run(read_body(req, 10))


def test_understated_content_length_still_limited(make_request: Any) -> None:
    req = make_request([b"x" * 6, b"x" * 6], headers={"content-length": "3"})
    with pytest.raises(PayloadTooLarge):
        run(read_body(req, 10))


def test_exactly_at_limit(make_request: Any) -> None:
    assert run(read_body(make_request([b"x" * 5, b"y" * 5]), 10)) == b"xxxxxyyyyy"


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", " 5", ""])
def test_invalid_content_length(make_request: Any, value: str) -> None:
    req = make_request([b"hello"], headers={"content-length": value})
    with pytest.raises(BadRequest):
        run(read_body(req, 100))


# -- read_json -------------------------------------------------------------------------------------------


def test_read_json_valid(make_request: Any) -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "unknown_sdk_field": 1})
    parsed = run(read_json(json_request(make_request, body, chunked=True), ChatBody, 1000))
    assert isinstance(parsed, ChatBody)
    assert parsed.model == "m"
    assert parsed.messages == [{"role": "user", "content": "hi"}]
    assert not hasattr(parsed, "unknown_sdk_field")


@pytest.mark.parametrize("body", [b"{", b"{'model': 'x'}", b'{"model": }', b"nul", b"\xff\xfe", b'{"a":1}x'])
def test_malformed_json(make_request: Any, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        run(read_json(json_request(make_request, body), ChatBody, 1000))
    assert info.value.code == "MALFORMED_JSON"
    assert info.value.status == 400


@pytest.mark.parametrize("body", [b"[]", b'[{"model": "m"}]', b'"text"', b"42", b"null", b"true"])
def test_non_object_json(make_request: Any, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        run(read_json(json_request(make_request, body), ChatBody, 1000))
    assert info.value.code == "MALFORMED_JSON"
    assert "object" in info.value.message


@pytest.mark.parametrize("body", [b"", b"   \n\t"])
def test_empty_json_body(make_request: Any, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        run(read_json(json_request(make_request, body), ChatBody, 1000))
    assert info.value.code == "EMPTY_BODY"


def test_validation_failed_detail(make_request: Any) -> None:
    body = orjson.dumps({"messages": "not-a-list", "temperature": 3})
    with pytest.raises(ValidationFailed) as info:
        run(read_json(json_request(make_request, body), ChatBody, 1000))
    err = info.value
    assert err.status == 422
    by_loc = {tuple(item["loc"]): item for item in err.detail}
    assert set(by_loc) == {("body", "model"), ("body", "messages"), ("body", "temperature")}
    for item in err.detail:
        assert item["loc"][0] == "body"
        assert isinstance(item["msg"], str)
        assert isinstance(item["type"], str)
    assert by_loc[("body", "model")]["type"] == "missing"
    assert by_loc[("body", "messages")]["type"] == "list_type"
    assert by_loc[("body", "messages")]["input"] == "not-a-list"
    temp = by_loc[("body", "temperature")]
    assert temp["type"] == "less_than_equal"
    assert temp["ctx"] == {"le": 2}
    assert temp["input"] == 3
    orjson.dumps(err.detail)  # JSON-safe, as the dialects render it
    assert err.message.startswith("body.")
    assert "(and 2 more)" in err.message


def test_validation_detail_nested_loc_and_unserialisable_ctx(make_request: Any) -> None:
    body = orjson.dumps({"model": "has space", "messages": [], "stop": ["ok", 5]})
    with pytest.raises(ValidationFailed) as info:
        run(read_json(json_request(make_request, body), ChatBody, 1000))
    by_loc = {tuple(item["loc"]): item for item in info.value.detail}
    assert ("body", "stop", 1) in by_loc
    value_error = by_loc[("body", "model")]
    assert value_error["type"] == "value_error"
    assert isinstance(value_error["ctx"]["error"], str)  # an exception object, stringified
    assert "no spaces" in value_error["ctx"]["error"]
    orjson.dumps(info.value.detail)


def test_read_json_oversize_via_content_length(make_request: Any) -> None:
    body = orjson.dumps({"model": "m", "messages": [], "pad": "x" * 200})
    with pytest.raises(PayloadTooLarge):
        run(read_json(json_request(make_request, body), ChatBody, 100))


def test_read_json_oversize_via_streaming(make_request: Any) -> None:
    body = orjson.dumps({"model": "m", "messages": [], "pad": "x" * 200})
    with pytest.raises(PayloadTooLarge):
        run(read_json(json_request(make_request, body, chunked=True, length=None), ChatBody, 100))


# -- parse_query ----------------------------------------------------------------------------------------


def test_query_defaults() -> None:
    q = parse_query(ListFilesQuery, QueryParams(""))
    assert (q.page, q.page_size, q.include_total, q.sample_type, q.search) == (0, 100, True, None, None)


def test_query_arrays_form_explode() -> None:
    q = parse_query(ListFilesQuery, QueryParams("sample_type=instruct&sample_type=pretrain&source=upload"))
    assert q.sample_type == ["instruct", "pretrain"]
    assert q.source == ["upload"]


def test_query_arrays_bracket_style() -> None:
    q = parse_query(ListFilesQuery, QueryParams("sample_type[]=instruct&sample_type[]=batch_request"))
    assert q.sample_type == ["instruct", "batch_request"]
    q = parse_query(ListFilesQuery, QueryParams("mimetypes%5B%5D=text%2Fplain"))
    assert q.mimetypes == ["text/plain"]


def test_query_arrays_both_styles_merge() -> None:
    q = parse_query(ListFilesQuery, QueryParams("source=upload&source[]=mistral"))
    assert q.source == ["upload", "mistral"]


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("false", False), ("0", False), ("1", True),
                                               ("False", False), ("yes", True), ("off", False)])
def test_query_bool_coercion(raw: str, expected: bool) -> None:
    assert parse_query(ListFilesQuery, QueryParams(f"include_total={raw}")).include_total is expected


def test_query_int_coercion() -> None:
    q = parse_query(ListFilesQuery, QueryParams("page=3&page_size=25&search=abc&purpose=batch"))
    assert (q.page, q.page_size, q.search, q.purpose) == (3, 25, "abc", "batch")
    assert parse_query(SignedUrlQuery, QueryParams("expiry=48")).expiry == 48


def test_query_last_value_wins_for_scalars() -> None:
    assert parse_query(ListFilesQuery, QueryParams("page=1&page=2")).page == 2


def test_query_unknown_keys_ignored() -> None:
    q = parse_query(ListModelsQuery, QueryParams("api_token=at_secret&provider=mistralai&x=1"))
    assert q.provider == "mistralai"
    assert q.model is None


@pytest.mark.parametrize(("raw", "loc", "type_"), [
    ("page=x", ["query", "page"], "int_parsing"),
    ("page=-1", ["query", "page"], "greater_than_equal"),
    ("page_size=0", ["query", "page_size"], "greater_than_equal"),
    ("page_size=1001", ["query", "page_size"], "less_than_equal"),
    ("include_total=maybe", ["query", "include_total"], "bool_parsing"),
    ("sample_type=instruct&sample_type=nope", ["query", "sample_type", 1], "literal_error"),
    ("source[]=elsewhere", ["query", "source", 0], "literal_error"),
])
def test_query_errors(raw: str, loc: list[Any], type_: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_query(ListFilesQuery, QueryParams(raw))
    detail = info.value.detail
    assert len(detail) == 1
    assert detail[0]["loc"] == loc
    assert detail[0]["type"] == type_
    assert detail[0]["loc"][0] == "query"
    orjson.dumps(detail)


def test_query_several_errors() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_query(ListFilesQuery, QueryParams("page=x&page_size=x"))
    assert sorted(tuple(d["loc"]) for d in info.value.detail) == [("query", "page"), ("query", "page_size")]


def test_query_exclude() -> None:
    # Old-format path parameters sit in the query; excluded names are not validated as query fields.
    q = parse_query(ListFilesQuery, QueryParams("page=not-a-number&search=s"), frozenset({"page"}))
    assert q.page == 0
    assert q.search == "s"
