"""errors: one hierarchy, each class with its HTTP status, Mistral error type and default code."""

from __future__ import annotations

import pytest

from mistral_gateway import errors
from mistral_gateway.errors import (
    BadGateway,
    BadRequest,
    ClientClosedRequest,
    Conflict,
    Forbidden,
    GatewayError,
    GatewayTimeout,
    InternalError,
    MethodNotAllowed,
    NotFound,
    NotImplementedOperation,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UpstreamError,
    ValidationFailed,
)

EXPECTED = [
    (BadRequest, 400, "invalid_request_error", "BAD_REQUEST"),
    (Unauthorized, 401, "authentication_error", "UNAUTHORIZED"),
    (Forbidden, 403, "invalid_request_error", "FORBIDDEN"),
    (NotFound, 404, "invalid_request_error", "NOT_FOUND"),
    (MethodNotAllowed, 405, "invalid_request_error", "METHOD_NOT_ALLOWED"),
    (Conflict, 409, "invalid_request_error", "CONFLICT"),
    (ClientClosedRequest, 499, "invalid_request_error", "CLIENT_CLOSED_REQUEST"),
    (PayloadTooLarge, 413, "invalid_request_error", "PAYLOAD_TOO_LARGE"),
    (ValidationFailed, 422, "invalid_request_error", "VALIDATION_ERROR"),
    (RateLimited, 429, "rate_limit_error", "RATE_LIMITED"),
    (InternalError, 500, "server_error", "INTERNAL_ERROR"),
    (NotImplementedOperation, 501, "server_error", "NOT_IMPLEMENTED"),
    (ServiceUnavailable, 503, "server_error", "SERVICE_UNAVAILABLE"),
    (BadGateway, 502, "server_error", "UPSTREAM_UNAVAILABLE"),
    (GatewayTimeout, 504, "server_error", "UPSTREAM_TIMEOUT"),
]


@pytest.mark.parametrize(("cls", "status", "type_", "code"), EXPECTED, ids=[c[0].__name__ for c in EXPECTED])
def test_status_type_and_default_code(cls: type[GatewayError], status: int, type_: str, code: str) -> None:
    assert issubclass(cls, GatewayError)
    assert cls.status == status
    assert cls.type == type_
    assert cls.default_code == code


def test_every_exported_error_is_covered() -> None:
    exported = {getattr(errors, name) for name in errors.__all__} - {GatewayError, UpstreamError}
    assert exported == {c[0] for c in EXPECTED}


def test_upstream_error_keeps_the_upstream_status() -> None:
    err = UpstreamError(402, "insufficient credit", code="3505")
    assert (err.status, err.message, err.code, err.type) == (402, "insufficient credit", "3505",
                                                             "invalid_request_error")
    assert UpstreamError(502, "bad").type == "server_error" and UpstreamError(502, "bad").code == "UPSTREAM_502"
    assert BadRequest.status == 400  # the per-instance status leaves the classes alone


def test_plain_error_fields() -> None:
    err = NotFound("file 'x' not found", code="FILE_NOT_FOUND", param="file_id", headers={"X-A": "1"})
    assert str(err) == "file 'x' not found"
    assert err.message == "file 'x' not found"
    assert err.code == "FILE_NOT_FOUND"
    assert err.param == "file_id"
    assert err.headers == {"X-A": "1"}


def test_default_code_and_empty_headers() -> None:
    err = BadRequest("nope")
    assert err.code == "BAD_REQUEST"
    assert err.param is None
    assert err.headers == {}


def test_headers_are_copied() -> None:
    given = {"X-A": "1"}
    err = Forbidden("no", headers=given)
    given["X-B"] = "2"
    assert err.headers == {"X-A": "1"}


def test_validation_failed_message_from_first_item() -> None:
    detail = [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]
    err = ValidationFailed(detail)
    assert err.detail is detail
    assert err.message == "body.model: Field required"
    assert err.status == 422
    assert err.code == "VALIDATION_ERROR"


def test_validation_failed_message_counts_more_items() -> None:
    detail = [
        {"loc": ["query", "page"], "msg": "bad int", "type": "int_parsing"},
        {"loc": ["query", "page_size"], "msg": "too big", "type": "less_than_equal"},
        {"loc": ["query", "x"], "msg": "x", "type": "x"},
    ]
    assert ValidationFailed(detail).message == "query.page: bad int (and 2 more)"


def test_validation_failed_without_loc_and_empty_detail() -> None:
    assert ValidationFailed([{"loc": [], "msg": "whole body wrong", "type": "t"}]).message == "whole body wrong"
    assert ValidationFailed([]).message == "invalid request"
    assert ValidationFailed([], message="custom").message == "custom"


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (1.4, "1"), (2.6, "3"), (30, "30")])
def test_rate_limited_retry_after_header(seconds: float, header: str) -> None:
    err = RateLimited("slow down", retry_after=seconds)
    assert err.retry_after == seconds
    assert err.headers == {"Retry-After": header}
    assert RateLimited("x", retry_after=1, code="QUOTA").code == "QUOTA"


def test_service_unavailable_retry_after_is_optional() -> None:
    assert ServiceUnavailable("busy").headers == {}
    assert ServiceUnavailable("busy", retry_after=4.4).headers == {"Retry-After": "4"}
    assert ServiceUnavailable("busy", retry_after=0).headers == {"Retry-After": "1"}
    assert ServiceUnavailable("busy", code="ENGINE_LOADING").code == "ENGINE_LOADING"
