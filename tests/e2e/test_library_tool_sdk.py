"""The document_library tool for real, through the official SDK (mistralai 3.7.0): a library with a document that
states a made-up fact (MiniLM embeddings), an agent with the tool on the smallest chat model that answers from it
(Qwen2.5-Coder-1.5B, the default `mistral-small-latest`: given the passages as a tool result, the 0.5B model
answered "[1]" or quoted the wrong passage while this was written), a conversation whose answer carries the fact
and cites the document, the same question streamed, and the same question without the tool, whose answer does not
know it.

If the SDK rejects an answer (the tool.execution entry, a tool_reference chunk, the tool events), the server's shape
is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mistralai.client import Mistral

from mistral_gateway.config import Settings
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MODEL = "mistral-small-latest"
ARGS = {"max_tokens": 40, "temperature": 0}
FACT = ("Vennmoor Library notes\n\nThe secret password of the Vennmoor library is plumquartz. Visitors say it at the "
        "north gate after sunset.\n")
OTHER = "Garden notes\n\nTomatoes need six hours of sun a day and water every morning in summer.\n"
QUESTION = "What is the secret password of the Vennmoor library?"


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Mistral]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("library-tool") / "data", weights_path=weights_dir,
                        bootstrap_dev_token=False)
    with serving(settings) as (live, _services, token), \
            Mistral(api_key=token, server_url=live.base_url, timeout_ms=180_000) as client:
        yield client


def _processed(sdk: Mistral, library_id: str, document_id: str) -> None:
    for _ in range(600):  # the ingestion job: extract, chunk, embed with MiniLM, index
        status = sdk.beta.libraries.documents.get(library_id=library_id, document_id=document_id)
        if status.process_status not in ("todo", "in_progress"):
            assert status.process_status == "done", status
            return
        time.sleep(0.2)
    raise AssertionError("the document was not processed in two minutes")


def test_an_agent_answers_from_its_library(sdk: Mistral) -> None:
    library = sdk.beta.libraries.create(name="vennmoor")
    for name, text in (("vennmoor.md", FACT), ("garden.txt", OTHER)):
        doc = sdk.beta.libraries.documents.upload(library_id=library.id,
                                                  file={"file_name": name, "content": text.encode()})
        _processed(sdk, library.id, doc.id)
    agent = sdk.beta.agents.create(model=MODEL, name="librarian", completion_args=ARGS,
                                   instructions="Answer in one short sentence, using the documents.",
                                   tools=[{"type": "document_library", "library_ids": [library.id]}])

    res = sdk.beta.conversations.start(agent_id=agent.id, inputs=QUESTION)
    assert [o.type for o in res.outputs] == ["tool.execution", "message.output"]
    execution, answer = res.outputs
    assert res.usage.connectors == {"document_library": 1}
    assert execution.name == "document_library" and library.id in execution.arguments
    assert execution.info["results"][0]["document_name"] == "vennmoor.md"
    text = "".join(c.text for c in answer.content if c.type == "text")
    assert "plumquartz" in text.lower()
    refs = [c for c in answer.content if c.type == "tool_reference"]
    assert refs[0].tool == "document_library" and refs[0].title == "vennmoor.md"
    assert "plumquartz" in (refs[0].description or "")
    history = sdk.beta.conversations.get_history(conversation_id=res.conversation_id)
    assert [e.type for e in history.entries] == ["message.input", "tool.execution", "message.output"]

    events = list(sdk.beta.conversations.start_stream(agent_id=agent.id, inputs=QUESTION))
    kinds = [e.event for e in events]
    assert kinds[:3] == ["conversation.response.started", "tool.execution.started", "tool.execution.done"]
    assert kinds[-1] == "conversation.response.done"
    deltas = [e.data for e in events if e.event == "message.output.delta"]
    assert "plumquartz" in "".join(d.content for d in deltas if isinstance(d.content, str)).lower()
    assert [d.content.title for d in deltas if not isinstance(d.content, str)][:1] == ["vennmoor.md"]

    plain = sdk.beta.conversations.start(model=MODEL, inputs=QUESTION, completion_args=ARGS,
                                         instructions="Answer in one short sentence.")
    assert [o.type for o in plain.outputs] == ["message.output"]
    assert "plumquartz" not in str(plain.outputs[0].content).lower()
