"""The admin API: /admin/tokens (list, create, revoke) and /admin/usage, behind the admin scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from mistral_gateway.services.container import Services

pytestmark = pytest.mark.usefixtures("database_backend")  # tokens and usage rows: on SQLite and PostgreSQL

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(make_token: Callable[..., str]) -> str:
    return make_token("root", scopes=["admin"])


@pytest.mark.parametrize(("method", "path"), [("GET", "/admin/tokens"), ("POST", "/admin/tokens"),
                                              ("DELETE", "/admin/tokens/tok_x"), ("GET", "/admin/usage")])
def test_admin_routes_need_the_admin_scope(client: TestClient, make_token: Callable[..., str], method: str,
                                           path: str) -> None:
    missing = client.request(method, path)
    assert missing.status_code == 401 and missing.json()["code"] == "MISSING_TOKEN"
    assert missing.json()["object"] == "error"
    invalid = client.request(method, path, headers=bearer("at_" + "x" * 43))
    assert invalid.status_code == 401 and invalid.json()["code"] == "INVALID_TOKEN"
    user = make_token("user", scopes=["chat", "models", "files"])
    forbidden = client.request(method, path, headers=bearer(user))
    assert forbidden.status_code == 403
    assert forbidden.json() == {"object": "error", "type": "invalid_request_error", "param": None,
                                "code": "MISSING_SCOPE",
                                "message": "this token lacks the 'admin' scope needed for the admin API"}
    lowcode_style = client.request(method, path, params={"api_token": make_token("all", scopes=["*"])})
    assert lowcode_style.status_code == 401  # the admin API takes a Bearer header only


def test_star_scope_is_not_admin(client: TestClient, make_token: Callable[..., str]) -> None:
    """`*` opens every Mistral operation but not the admin API, which sees every workspace's tokens."""
    assert client.get("/admin/tokens", headers=bearer(make_token(scopes=["*"]))).status_code == 403
    assert client.get("/admin/tokens", headers=bearer(make_token(scopes=["*", "admin"]))).status_code == 200


def test_admin_scope_alone_does_not_open_the_mistral_api(client: TestClient, admin: str) -> None:
    assert client.get("/v1/models", headers=bearer(admin)).status_code == 403


def test_create_list_revoke(client: TestClient, admin: str) -> None:
    r = client.post("/admin/tokens", headers=bearer(admin),
                    json={"name": "ci", "workspace": "team-a", "scopes": ["models"], "expires_in": 3600,
                          "requests_per_minute": 30, "concurrent_requests": 2})
    assert r.status_code == 201, r.text
    created = r.json()
    token = created.pop("token")
    assert token.startswith("at_") and created["prefix"] == token[:10] + "…"
    assert {k: created[k] for k in ("name", "workspace", "scopes", "state", "requests_per_minute",
                                    "tokens_per_minute", "concurrent_requests")} == {
        "name": "ci", "workspace": "team-a", "scopes": ["models"], "state": "active", "requests_per_minute": 30,
        "tokens_per_minute": None, "concurrent_requests": 2}
    assert created["expires_at"] - created["created_at"] == 3600
    assert client.get("/v1/models", headers=bearer(token)).status_code == 200  # the new token works at once

    listing = client.get("/admin/tokens", headers=bearer(admin))
    assert listing.status_code == 200 and listing.json()["object"] == "list"
    rows = {row["id"]: row for row in listing.json()["data"]}
    assert rows[created["id"]] == created
    assert token not in listing.text and "token_hash" not in listing.text

    revoked = client.delete(f"/admin/tokens/{created['id']}", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json() == {"id": created["id"], "object": "token", "revoked": True}
    denied = client.get("/v1/models", headers=bearer(token))
    assert denied.status_code == 401 and denied.json()["code"] == "TOKEN_REVOKED"
    rows = {row["id"]: row for row in client.get("/admin/tokens", headers=bearer(admin)).json()["data"]}
    assert rows[created["id"]]["state"] == "revoked" and rows[created["id"]]["revoked_at"] is not None


def test_create_validates_its_body(client: TestClient, admin: str) -> None:
    r = client.post("/admin/tokens", headers=bearer(admin), json={"name": "x", "requests_per_minute": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "requests_per_minute"]
    r = client.post("/admin/tokens", headers=bearer(admin), json={"workspace": "w"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = client.post("/admin/tokens", headers=bearer(admin), json={"name": "x", "scopes": ["bogus"]})
    assert r.status_code == 400 and r.json()["param"] == "scope" and "bogus" in r.json()["message"]
    r = client.post("/admin/tokens", headers=bearer(admin), content=b"not json")
    assert r.status_code == 400 and r.json()["code"] == "MALFORMED_JSON"


def test_revoking_an_unknown_token_is_404(client: TestClient, admin: str) -> None:
    r = client.delete("/admin/tokens/tok_nope", headers=bearer(admin))
    assert r.status_code == 404 and r.json()["code"] == "TOKEN_NOT_FOUND" and r.json()["object"] == "error"


def test_usage_records_and_aggregates(client: TestClient, services: Services, admin: str,
                                      make_token: Callable[..., str]) -> None:
    alice, bob = make_token("alice", workspace="a"), make_token("bob", workspace="b", scopes=["files"])
    for _ in range(3):
        assert client.get("/v1/models", headers=bearer(alice)).status_code == 200
    assert client.get("/mistralai/v1/models/mistral-small-latest", params={"api_token": alice}).status_code == 200
    assert client.get("/v1/models", headers=bearer(bob)).status_code == 403
    assert client.get("/v1/files/nope", headers=bearer(bob)).status_code == 404
    alice_id, bob_id = (services.tokens.verify(t).token_id for t in (alice, bob))

    def usage(**params: Any) -> Any:
        r = client.get("/admin/usage", headers=bearer(admin), params=params)
        assert r.status_code == 200, r.text
        return r.json()

    by_token = usage(by="token")
    assert by_token["object"] == "usage.summary" and by_token["by"] == "token"
    rows = {row["key"]: row for row in by_token["data"]}
    assert (rows[alice_id]["requests"], rows[alice_id]["errors"]) == (4, 0)
    assert (rows[bob_id]["requests"], rows[bob_id]["errors"]) == (2, 2)
    assert set(rows[alice_id]) == {"key", "requests", "errors", "prompt_tokens", "completion_tokens",
                                   "total_tokens", "mean_latency_ms"}
    assert rows[alice_id]["mean_latency_ms"] > 0
    assert {row["key"]: row["requests"] for row in usage(by="operation")["data"]} == {
        "list_available_models": 4, "retrieve_model": 1, "retrieve_file": 1}
    assert {row["key"]: row["requests"] for row in usage(by="workspace")["data"]} == {"a": 4, "b": 2}
    assert {row["key"]: row["requests"] for row in usage(by="model")["data"]} == {None: 5,
                                                                                   "mistral-small-latest": 1}
    assert usage(by="backend")["data"][0]["key"] == "local"

    page0 = usage(limit=4)
    assert page0["object"] == "list" and page0["total"] == 6 and page0["page"] == 0 and len(page0["data"]) == 4
    newest = page0["data"][0]
    assert (newest["token_id"], newest["operation"], newest["status"], newest["dialect"]) == \
        (bob_id, "retrieve_file", 404, "native")
    page1 = usage(limit=4, page=1)
    assert len(page1["data"]) == 2 and {r["id"] for r in page0["data"]}.isdisjoint(r["id"] for r in page1["data"])
    assert usage(since="1h")["total"] == 6
    assert usage(since="2999-01-01")["total"] == 0 and usage(since="2999-01-01", by="model")["data"] == []
    assert usage(until="2000-01-01T00:00:00Z")["total"] == 0


def test_usage_rejects_bad_arguments(client: TestClient, admin: str) -> None:
    r = client.get("/admin/usage", headers=bearer(admin), params={"since": "last tuesday"})
    assert r.status_code == 400 and r.json()["param"] == "since"
    r = client.get("/admin/usage", headers=bearer(admin), params={"by": "colour"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "by"]
    r = client.get("/admin/usage", headers=bearer(admin), params={"limit": "0"})
    assert r.status_code == 422
