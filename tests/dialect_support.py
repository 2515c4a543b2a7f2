"""Reading answers in either dialect: a success's body (unwrapped from LowCodeAPI's ``{"data": ...}``) and an
error's fields, each checked to be in the dialect's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.testclient import TestClient

__all__ = ["DialectApi", "data", "error"]


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


@dataclass
class DialectApi:
    """Calls in one dialect with one token: native ``/v1`` paths with Bearer auth, or LowCodeAPI's ``/mistralai/v1``
    with ``?api_token=``. ``path`` is written without the ``/v1`` prefix."""

    client: TestClient
    dialect: str
    token: str

    def __call__(self, method: str, path: str, *, params: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        if self.dialect == "native":
            return self.client.request(method, "/v1" + path, params=params,
                                       headers={"Authorization": f"Bearer {self.token}"}, **kw)
        return self.client.request(method, "/mistralai/v1" + path, params={**(params or {}), "api_token": self.token},
                                   **kw)

    def fails(self, status: int, method: str, path: str, code: str | None = None, **kw: Any) -> dict[str, Any]:
        """The error answer's fields, checked to be in the dialect's shape (and to carry ``code``, if given)."""
        err = error(self(method, path, **kw), self.dialect, status)
        if code is not None:
            assert err["code"] == code, err
        return err
