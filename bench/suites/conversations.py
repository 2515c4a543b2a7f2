"""Suite "conversations": what a conversation turn adds over a bare chat completion of the same prompt, and how fast
a long conversation's history reads back.

One ``mistral-gateway serve`` (the default catalog plus a fake chat model, engine ``fake``) answers, one request at a
time from one client, in back-to-back pairs (which side goes first alternates from pair to pair):

- ``POST /v1/chat/completions`` with one user message (the baseline), and
- ``POST /v1/conversations`` with the same text as ``inputs``, the same model and ``max_tokens`` (``store`` true:
  the conversation and its two entries are written to the database, as a client's first turn would be).

Both on the fake engine (the gateway's own cost; target: the conversation's p50 at most 5 ms above the chat's) and
on the real smallest model (temperature 0, fixed seed, so both sides generate the same tokens; target: at most 2%
of the chat's p50 wall time). Then a conversation of 200 entries is built (its inputs in one start) and
``GET /v1/conversations/{id}/history`` is timed: p50 and p99, reported (no target). Last, what a
``document_library`` tool adds to an agent's turn (fake chat engine, the query embedded with the real MiniLM, the
local index searched over a library of ``LIBRARY_DOCUMENTS`` text documents): the same agent with and without the
tool, in back-to-back pairs, reported (no target).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from core import BenchConfig, Check, Row, Sample
from servers import Server, ServerError, free_port, launched

from .embeddings import _log
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["HISTORY_ENTRIES", "MAX_FAKE_OVERHEAD_MS", "MAX_REAL_OVERHEAD", "run"]

SUITE = "conversations"
FAKE_MODEL = "bench-fake-chat"
REAL_MODEL = "ministral-3b-latest"  # the smallest bundled chat model (SmolLM2-135M)
MAX_FAKE_OVERHEAD_MS = 5.0
MAX_REAL_OVERHEAD = 0.02
HISTORY_ENTRIES = 200
PROMPT = "Name three rivers of Europe and one fact about each."
# (model, requests per side per round, max_tokens)
CASES = ((FAKE_MODEL, 200, 16), (REAL_MODEL, 20, 24))
HISTORY_READS = 300
LIBRARY_DOCUMENTS = 40  # ~3,500 characters each: 4 chunks of the default 1,000 characters
LIBRARY_PAIRS = 100
_WORDS = ("river", "bridge", "tower", "garden", "market", "harbour", "engine", "signal", "winter", "copper",
          "lantern", "meadow", "archive")


def _models_env() -> str:
    from mistral_gateway.config import ModelEntry, default_models

    fake = ModelEntry(id=FAKE_MODEL, engine="fake", capabilities=["completion_chat", "function_calling"])
    return json.dumps([m.model_dump(mode="json") for m in [*default_models(), fake]])


def _call(post: Callable[[], Any]) -> float:
    """One call's latency (ms); anything but a 200 stops the suite."""
    started = time.perf_counter()
    response = post()
    elapsed = 1e3 * (time.perf_counter() - started)
    if response.status_code != 200:
        raise ServerError(f"{response.request.method} {response.request.url.path} answered "
                          f"{response.status_code}: {response.text[:300]}")
    return elapsed


def _paired(sides: dict[str, Callable[[], Any]], n: int, server: Server, first: int
            ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``n`` pairs, the two sides one right after the other, which one first alternating from pair to pair: a load
    that drifts during the round hits both sides of a pair alike. Latencies (ms) and server CPU seconds per side."""
    names = list(sides)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    cpu = dict.fromkeys(names, 0.0)
    for i in range(n):
        for name in names if (i + first) % 2 == 0 else names[::-1]:
            before = server.cpu_seconds()
            latencies[name].append(_call(sides[name]))
            cpu[name] += server.cpu_seconds() - before
    return latencies, cpu


def _rounds(sides: dict[str, Callable[[], Any]], n: int, server: Server, rounds: int,
            logged: Callable[[int, dict[str, list[float]]], str]) -> tuple[dict[str, list[list[float]]],
                                                                          dict[str, list[float]]]:
    """Two warm-up calls a side (the model loaded, the connection open, the tables' pages cached), then ``rounds``
    of ``n`` pairs: latencies and server CPU per side, one list a round; each round logged."""
    for post in sides.values():
        _call(post)
        _call(post)
    latencies: dict[str, list[list[float]]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for round_no in range(rounds):
        lat, c = _paired(sides, n, server, first=round_no)
        for name in sides:
            latencies[name].append(lat[name])
            cpu[name].append(c[name])
        _log(logged(round_no, lat))
    return latencies, cpu


def added_ms(chat: list[float], conversation: list[float]) -> float:
    """The turn's overhead: the median of the pairwise differences (each pair ran back to back)."""
    return statistics.median(c - b for b, c in zip(chat, conversation, strict=True))


def _row(scenario: str, url: str, latencies: list[list[float]], cpu: list[float], baseline: str | None = None
         ) -> Row:
    samples = [Sample(rps=len(lat) / (sum(lat) / 1e3), p50_ms=statistics.median(lat),
                      p99_ms=_p99(lat), errors=0, requests=len(lat), duration_s=sum(lat) / 1e3, server_cpu_s=c)
               for lat, c in zip(latencies, cpu, strict=True)]
    flat = [x for lat in latencies for x in lat]
    total_s = sum(flat) / 1e3
    return Row(suite=SUITE, scenario=scenario, url=url, rps=len(flat) / total_s, p50_ms=statistics.median(flat),
               p99_ms=_p99(flat), errors=0, cpu_us_per_request=1e6 * sum(cpu) / len(flat),
               server_cpu_percent=100 * sum(cpu) / total_s, samples=samples, baseline=baseline)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _turn_rows(client: Any, server: Server, model: str, n: int, max_tokens: int, rounds: int) -> list[Row]:
    args = {"max_tokens": max_tokens, "temperature": 0, "random_seed": 7}
    chat_body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **args}
    conv_body = {"model": model, "inputs": PROMPT, "completion_args": args}
    sides: dict[str, Callable[[], Any]] = {
        "chat": lambda: client.post("/v1/chat/completions", json=chat_body),
        "conversation": lambda: client.post("/v1/conversations", json=conv_body),
    }
    def logged(round_no: int, lat: dict[str, list[float]]) -> str:
        return (f"  {model} round {round_no + 1}/{rounds}: chat p50 {statistics.median(lat['chat']):.1f} ms, "
                f"conversation p50 {statistics.median(lat['conversation']):.1f} ms, added "
                f"{added_ms(lat['chat'], lat['conversation']):.2f} ms")

    latencies, cpu = _rounds(sides, n, server, rounds, logged)
    engine = "fake engine" if model == FAKE_MODEL else f"real model ({model})"
    base = _row(f"{engine}: POST /v1/chat/completions", "/v1/chat/completions", latencies["chat"], cpu["chat"])
    row = _row(f"{engine}: POST /v1/conversations", "/v1/conversations", latencies["conversation"],
               cpu["conversation"], baseline=base.scenario)
    row.ratio = row.rps / base.rps if row.rps and base.rps else None
    assert row.p50_ms is not None and base.p50_ms is not None
    added = added_ms([x for r in latencies["chat"] for x in r], [x for r in latencies["conversation"] for x in r])
    if model == FAKE_MODEL:
        row.checks.append(Check("turn overhead at p50", f"<= {MAX_FAKE_OVERHEAD_MS:g} ms", f"{added:.2f} ms",
                                added <= MAX_FAKE_OVERHEAD_MS))
    else:
        share = added / base.p50_ms
        row.checks.append(Check("turn overhead at p50", f"<= {100 * MAX_REAL_OVERHEAD:g}% of the chat's wall time",
                                f"{100 * share:.2f}% ({added:.1f} ms of {base.p50_ms:.0f} ms)",
                                share <= MAX_REAL_OVERHEAD))
    row.notes.append(f"info: {n} request pairs per round (chat and conversation back to back, alternating which goes "
                     f"first); overhead = median pairwise difference; max_tokens {max_tokens}; store=true")
    return [base, row]


def _history_row(client: Any, server: Server, rounds: int) -> Row:
    inputs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: a short line of history"}
              for i in range(HISTORY_ENTRIES - 1)]  # + the model's answer = HISTORY_ENTRIES entries
    started = client.post("/v1/conversations", json={"model": FAKE_MODEL, "inputs": inputs,
                                                     "completion_args": {"max_tokens": 8}})
    if started.status_code != 200:
        raise ServerError(f"POST /v1/conversations answered {started.status_code}: {started.text[:300]}")
    path = f"/v1/conversations/{started.json()['conversation_id']}/history"
    entries = len(client.get(path).json()["entries"])
    latencies, cpu = [], []
    for _ in range(rounds):
        before = server.cpu_seconds()
        latencies.append([_call(lambda: client.get(path)) for _ in range(HISTORY_READS)])
        cpu.append(server.cpu_seconds() - before)
    row = _row(f"GET history of a {entries}-entry conversation", "/v1/conversations/{id}/history", latencies, cpu)
    row.notes.append(f"info: {HISTORY_READS} reads per round, one at a time; p50 {row.p50_ms:.2f} ms, "
                     f"p99 {row.p99_ms:.2f} ms")
    return row


def _created(response: Any) -> dict[str, Any]:
    if response.status_code not in (200, 201):
        raise ServerError(f"{response.request.method} {response.request.url.path} answered "
                          f"{response.status_code}: {response.text[:300]}")
    return response.json()  # type: ignore[no-any-return]


def library_document(i: int) -> bytes:
    """A text document of ~3,500 characters: words in a fixed order of its own, and one fact."""
    words = [_WORDS[(i * 7 + j * j) % len(_WORDS)] for j in range(480)]
    return (" ".join(words) + f". Document {i} says the code is {i * 7919}.").encode()


def _library_rows(client: Any, server: Server, rounds: int) -> list[Row]:
    library = _created(client.post("/v1/libraries", json={"name": "bench"}))["id"]
    docs = [_created(client.post(f"/v1/libraries/{library}/documents",
                                 files={"file": (f"d{i}.txt", library_document(i))}))["id"]
            for i in range(LIBRARY_DOCUMENTS)]
    deadline = time.monotonic() + 600
    while any(_created(client.get(f"/v1/libraries/{library}/documents/{d}"))["process_status"] in
              ("todo", "in_progress") for d in docs):
        if time.monotonic() > deadline:
            raise ServerError("the library's documents were not processed in 10 minutes")
        time.sleep(0.5)
    agent = {"model": FAKE_MODEL, "name": "bench", "completion_args": {"max_tokens": 16}}
    plain = _created(client.post("/v1/agents", json=agent))["id"]
    searching = _created(client.post("/v1/agents", json={
        **agent, "tools": [{"type": "document_library", "library_ids": [library]}]}))["id"]
    question = "What code does document 7 give?"
    sides: dict[str, Callable[[], Any]] = {
        "plain": lambda: client.post("/v1/conversations", json={"agent_id": plain, "inputs": question}),
        "library": lambda: client.post("/v1/conversations", json={"agent_id": searching, "inputs": question}),
    }
    latencies, cpu = _rounds(sides, LIBRARY_PAIRS, server, rounds, lambda round_no, lat: (
        f"  document_library round {round_no + 1}/{rounds}: added {added_ms(lat['plain'], lat['library']):.2f} ms"))
    base = _row("fake engine: agent turn", "/v1/conversations", latencies["plain"], cpu["plain"])
    row = _row(f"fake engine: agent turn with document_library ({LIBRARY_DOCUMENTS} documents, MiniLM)",
               "/v1/conversations", latencies["library"], cpu["library"], baseline=base.scenario)
    row.ratio = row.rps / base.rps if row.rps and base.rps else None
    added = added_ms([x for r in latencies["plain"] for x in r], [x for r in latencies["library"] for x in r])
    row.notes.append(f"info: {LIBRARY_PAIRS} request pairs per round, the same agent with and without the tool; "
                     f"added {added:.1f} ms at p50 (median pairwise difference): the query embedded, the index "
                     "searched, the tool.execution entry stored, the passages in the prompt")
    return [base, row]


def run(config: BenchConfig) -> list[Row]:
    import httpx

    gateway, env = _gateway_command(), _gateway_env()
    env["MISTRAL_GATEWAY_MODELS"] = _models_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    port = free_port()
    rows: list[Row] = []
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw, \
            httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
        if client.post("/v1/conversations", json={}).status_code == 501:
            return [Row(suite=SUITE, scenario="POST /v1/conversations", url="/v1/conversations", rps=None,
                        p50_ms=None, p99_ms=None, errors=0, cpu_us_per_request=None, server_cpu_percent=None,
                        samples=[], notes=["info: POST /v1/conversations answered 501: no rows yet"])]
        for model, n, max_tokens in CASES:
            rows += _turn_rows(client, gw, model, n, max_tokens, config.rounds)
        rows.append(_history_row(client, gw, config.rounds))
        rows += _library_rows(client, gw, config.rounds)
    return rows
