from starlette.testclient import TestClient


def test_health_needs_no_token(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_models_both_dialects(client: TestClient, token: str) -> None:
    native = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    lowcode = client.get("/mistralai/v1/models", params={"api_token": token})
    assert native.status_code == lowcode.status_code == 200
    assert lowcode.json() == {"data": native.json()}
    ids = {card["id"] for card in native.json()["data"]}
    assert {"mistral-small-latest", "codestral-latest", "mistral-embed", "qwen2.5-coder-1.5b-instruct"} <= ids
