"""Reading answers in either dialect: a success's body (unwrapped from LowCodeAPI's ``{"data": ...}``) and an
error's fields, each checked to be in the dialect's shape."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["data", "error"]


def data(r: httpx.Response, dialect: str, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    body = r.json()
    if dialect == "lowcode":
        assert set(body) == {"data"}
        return body["data"]
    return body


def error(r: httpx.Response, dialect: str, status: int) -> dict[str, Any]:
    """The error's message and code (a native 422: its ``detail`` list), checked to be in the dialect's shape."""
    assert r.status_code == status, r.text
    body = r.json()
    if dialect == "lowcode":
        assert set(body) == {"data"} and set(body["data"]) == {"error"}
        return body["data"]["error"]  # type: ignore[no-any-return]
    if status == 422:
        assert isinstance(body["detail"], list)
        return body  # type: ignore[no-any-return]
    assert body["object"] == "error"
    return body  # type: ignore[no-any-return]
