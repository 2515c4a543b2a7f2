"""services.conversation_prompt: entries as chat messages (calls merged into the assistant message before them,
results as tool messages, a handoff as a transfer call and its result) and handoff function names."""

from __future__ import annotations

from mistral_gateway.services.conversation_prompt import active_agent_id, chat_messages, handoff_function


def test_entries_become_messages() -> None:
    entries = [
        {"type": "message.input", "role": "user", "content": "hi", "prefix": False},
        {"type": "message.output", "role": "assistant", "content": [{"type": "thinking", "thinking": []},
                                                                    {"type": "text", "text": "let me check"}]},
        {"type": "function.call", "tool_call_id": "a1", "name": "f", "arguments": "{}"},
        {"type": "function.call", "tool_call_id": "a2", "name": "g", "arguments": "{\"x\": 1}"},
        {"type": "function.result", "tool_call_id": "a1", "result": "one"},
        {"type": "function.result", "tool_call_id": "a2", "result": "two"},
        {"type": "agent.handoff", "id": "handoff_0123456789abcdef", "previous_agent_id": "ag_a",
         "previous_agent_name": "A", "next_agent_id": "ag_b", "next_agent_name": "Math Expert"},
    ]
    messages = chat_messages(entries, "Be brief")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool", "assistant", "tool"]
    assistant = messages[2]
    assert assistant["content"] == "let me check" and [c["id"] for c in assistant["tool_calls"]] == ["a1", "a2"]
    transfer = messages[5]["tool_calls"][0]
    assert transfer["function"]["name"] == "transfer_to_math_expert" and messages[6]["tool_call_id"] == transfer["id"]
    assert active_agent_id(entries, "ag_a") == "ag_b" and active_agent_id(entries[:1], "ag_a") == "ag_a"
    assert chat_messages([{"type": "message.input", "role": "assistant", "content": "Once", "prefix": True}],
                         None) == [{"role": "assistant", "content": "Once", "prefix": True}]


def test_handoff_function_names() -> None:
    assert handoff_function("Math Expert!") == "transfer_to_math_expert"
    assert handoff_function("??") == "transfer_to_agent"
    assert len(handoff_function("x" * 300)) == len("transfer_to_") + 48
