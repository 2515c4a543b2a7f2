"""Agents through the official SDK (mistralai 3.7.0): ``client.beta.agents.create/list/get/update/update_version/
delete`` and ``client.agents.complete``/``stream`` against a live server on loopback, answered by the real smallest
chat model (SmolLM2-135M, served as ``ministral-3b-latest``) with a few tokens.

If the SDK rejects an answer, the server's shape is wrong: these tests are the compatibility contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from mistralai.client import Mistral
from mistralai.client.errors import HTTPValidationError, MistralError

from mistral_gateway.config import Settings, default_models
from support import serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "ministral-3b-latest"
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Mistral]:
    models = [m for m in default_models() if m.id == "smollm2-135m-instruct"]
    settings = Settings(data_dir=tmp_path_factory.mktemp("agents-sdk") / "data", weights_path=weights_dir,
                        bootstrap_dev_token=False, models=models)
    with serving(settings) as (server, _services, token), \
            Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as client:
        yield client


def test_crud_and_versions(sdk: Mistral) -> None:
    agents = sdk.beta.agents
    agent = agents.create(model=MODEL, name="weather", instructions="Answer in one sentence.", tools=[TOOL],
                          completion_args={"temperature": 0.2, "max_tokens": 8}, description="d",
                          metadata={"team": "sdk"}, version_message="first")
    assert agent.id.startswith("ag_") and (agent.version, agent.versions, agent.object) == (0, [0], "agent")
    assert agent.tools is not None and agent.tools[0].type == "function"
    assert agent.completion_args is not None and agent.completion_args.temperature == 0.2
    assert agent.completion_args.tool_choice == "auto" and agent.created_at.tzinfo is not None
    assert (agent.source, agent.deployment_chat, agent.metadata) == ("api", False, {"team": "sdk"})
    one = agents.update(agent_id=agent.id, name="weather-2", deployment_chat=True, instructions="Be terse.")
    assert (one.version, one.versions, one.name, one.deployment_chat) == (1, [0, 1], "weather-2", True)
    assert one.updated_at >= agent.updated_at and one.created_at == agent.created_at
    back = agents.update_version(agent_id=agent.id, version=0)
    assert (back.version, back.name, back.instructions, back.version_message) == (0, "weather", "Answer in one "
                                                                                               "sentence.", "first")
    assert agents.get(agent_id=agent.id).version == 0
    assert agents.get(agent_id=agent.id, agent_version=1).name == "weather-2"
    listed = agents.list(metadata={"team": "sdk"}, sources=["api"], search="weather", page_size=10)
    assert [a.id for a in listed] == [agent.id]
    assert agents.list(metadata={"team": "other"}) == []
    assert [a.id for a in agents.list(deployment_chat=True)] == [agent.id]
    agents.delete(agent_id=agent.id)
    with pytest.raises(MistralError) as err:
        agents.get(agent_id=agent.id)
    assert err.value.status_code == 404 and "AGENT_NOT_FOUND" in err.value.body


def test_errors(sdk: Mistral) -> None:
    agents = sdk.beta.agents
    with pytest.raises(MistralError) as err:
        agents.create(model=MODEL, name="x", tools=[{"type": "web_search"}])
    assert err.value.status_code == 400 and "web_search" in err.value.body
    with pytest.raises(MistralError) as err:
        agents.create(model=MODEL, name="x", handoffs=["ag_missing"])
    assert err.value.status_code == 400 and "ag_missing" in err.value.body
    with pytest.raises(HTTPValidationError):
        agents.create(model=MODEL, name="x", version_message="v" * 501)
    agent = agents.create(model=MODEL, name="versions")
    with pytest.raises(MistralError) as err:
        agents.update_version(agent_id=agent.id, version=5)
    assert err.value.status_code == 404 and "AGENT_VERSION_NOT_FOUND" in err.value.body
    with pytest.raises(MistralError) as err:
        agents.get(agent_id=agent.id, agent_version="production")  # aliases are not served
    assert err.value.status_code == 404
    with pytest.raises(MistralError) as err:
        sdk.agents.complete(agent_id="ag_missing", messages=HI, max_tokens=4)
    assert err.value.status_code == 404 and "AGENT_NOT_FOUND" in err.value.body
    tools = agents.create(model=MODEL, name="tools", tools=[TOOL])  # stored; SmolLM2-135M does not call tools
    with pytest.raises(MistralError) as err:
        sdk.agents.complete(agent_id=tools.id, messages=HI, max_tokens=4)
    assert err.value.status_code == 400 and "function_calling" in err.value.body


def test_complete_and_stream_on_the_real_model(sdk: Mistral) -> None:
    agent = sdk.beta.agents.create(model=MODEL, name="greeter", instructions="You are a friendly greeter.",
                                   completion_args={"max_tokens": 6, "temperature": 0.0})
    res = sdk.agents.complete(agent_id=agent.id, messages=HI)
    assert res.model == MODEL and res.object == "chat.completion" and len(res.id) == 32
    assert res.usage.completion_tokens <= 6 and res.usage.prompt_tokens > 5  # the instructions were prompted too
    assert res.choices[0].message.content and res.choices[0].finish_reason in ("stop", "length")
    again = sdk.agents.complete(agent_id=agent.id, messages=HI, max_tokens=2)  # the request's field wins
    assert again.usage.completion_tokens <= 2
    events = list(sdk.agents.stream(agent_id=agent.id, messages=HI, max_tokens=4))
    assert events and all(e.data.id == events[0].data.id for e in events)
    text = "".join(e.data.choices[0].delta.content or "" for e in events if e.data.choices)
    assert text and events[-1].data.usage is not None and events[-1].data.usage.completion_tokens <= 4
    assert events[-1].data.choices[0].finish_reason in ("stop", "length")

    async def both() -> tuple[object, object]:
        return await asyncio.gather(sdk.agents.complete_async(agent_id=agent.id, messages=HI, max_tokens=2),
                                    sdk.beta.agents.get_async(agent_id=agent.id))

    done, fetched = asyncio.run(both())
    assert done.choices and fetched.id == agent.id  # type: ignore[attr-defined]
