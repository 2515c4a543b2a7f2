"""Values PostgreSQL cannot hold (a NUL character in text) in names, filters and ids: never a 500. They used to
reach PostgreSQL as an unhandled ``DataError``; now ``Database.session`` answers 400 in the dialect's shape (a lookup
may answer 404 first). SQLite stores them, so there a name with a NUL character is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from db_backends import app_database_url
from dialect_support import error
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import build_services
from support import fake_settings

NUL = "nul\x00here"  # "here" is not echoed back
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
MODEL = "mistral-small-latest"
# (method, path, keyword arguments of the request): every one of these was a 500 on PostgreSQL
CASES = [
    ("GET", "/v1/files", {"params": {"search": NUL}}),
    ("POST", "/v1/agents", {"json": {"model": MODEL, "name": NUL}}),
    ("POST", "/v1/agents", {"json": {"model": NUL, "name": "n"}}),
    ("GET", "/v1/agents", {"params": {"name": NUL}}),
    ("GET", "/v1/agents", {"params": {"search": NUL}}),
    ("GET", "/v1/agents/ag_nul%00here", {}),
    ("POST", "/v1/conversations", {"json": {"model": MODEL, "inputs": "hi", "name": NUL}}),
    ("GET", "/v1/conversations/conv_nul%00here", {}),
    ("POST", "/v1/batch/jobs", {"json": {"model": NUL, "endpoint": "/v1/chat/completions",
                                         "requests": [{"body": CHAT}]}}),
    ("GET", "/v1/batch/jobs", {"params": {"model": NUL}}),
    ("GET", "/v1/batch/jobs", {"params": {"agent_id": NUL}}),
    ("GET", "/v1/batch/jobs/nul%00here", {}),
    ("GET", "/v1/fine_tuning/jobs", {"params": {"model": NUL}}),
    ("GET", "/v1/fine_tuning/jobs", {"params": {"wandb_project": NUL}}),
    ("GET", "/v1/fine_tuning/jobs", {"params": {"suffix": NUL}}),
    ("GET", "/v1/models/ft:nul%00here", {}),
    ("PATCH", "/v1/fine_tuning/models/ft:nul%00here", {"json": {"name": "x"}}),
    ("POST", "/v1/chat/completions", {"json": {"model": NUL, **CHAT}}),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_backend: str,
        request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, str]]:
    """One app per backend for the module: the requests here change nothing the others read."""
    with app_database_url(module_backend, request) as url:
        services = build_services(fake_settings(tmp_path_factory.mktemp("nul") / "data", database_url=url))
        try:
            token = services.tokens.create("t", scopes=["*", "admin"])[0]
            with TestClient(create_app(services=services)) as client:
                yield client, token
        finally:
            services.close()


def request(client: TestClient, token: str, dialect: str, method: str, path: str, **kwargs: Any) -> Any:
    if dialect == "native":
        return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
    kwargs["params"] = {**kwargs.get("params", {}), "api_token": token}
    return client.request(method, "/mistralai" + path, **kwargs)


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
@pytest.mark.parametrize(("method", "path", "kwargs"), CASES, ids=[f"{m} {p} {sorted(k)}" for m, p, k in CASES])
def test_a_nul_character_is_never_a_500(env: tuple[TestClient, str], module_backend: str, dialect: str,
                                        method: str, path: str, kwargs: dict[str, Any]) -> None:
    r = request(*env, dialect, method, path, **kwargs)
    assert r.status_code < 500, r.text[:300]
    if module_backend == "postgresql":
        assert r.status_code in (400, 404), r.text[:300]
        error(r, dialect, r.status_code)


@pytest.mark.parametrize("body", [{"name": NUL}, {"name": "ok", "workspace": NUL}])
def test_admin_tokens_with_a_nul_character(env: tuple[TestClient, str], module_backend: str,
                                           body: dict[str, str]) -> None:
    client, token = env
    created = client.post("/admin/tokens", headers={"Authorization": f"Bearer {token}"}, json=body)
    revoked = client.delete("/admin/tokens/tok_nul%00here", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code in (400, 404), revoked.text
    assert created.status_code == (400 if module_backend == "postgresql" else 201), created.text
    if created.status_code == 400:
        assert created.json()["code"] == "INVALID_VALUE" and "here" not in created.text
