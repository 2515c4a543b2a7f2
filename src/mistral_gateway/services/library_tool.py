"""The ``document_library`` tool as conversations run it, on the server: the turn's user text is the query, the
retrieved chunks are recorded in a ``tool.execution`` entry (``info`` keeps their text, so any later turn renders
the same context without searching again, even after a document is deleted), shown to the model as numbered
results of a tool call, and cited in the answer as ``tool_reference`` chunks, one per document.

Pure functions and a small holder; the retrieval itself is ``LibrarySearch`` (or anything shaped like it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from anyio.to_thread import run_sync

from mistral_gateway.errors import BadRequest

if TYPE_CHECKING:  # the prompt module renders past executions without the retrieval stack
    from mistral_gateway.services.library_search import Retrieved

__all__ = ["TOOL_NAME", "KnownLibraries", "LibraryTool", "Retriever", "check_library_tools", "context_text",
           "library_ids", "references", "user_text"]

TOOL_NAME = "document_library"
SNIPPET_CHARS = 200  # a reference's description: the start of the best chunk of its document
# Which library ids of a workspace exist (a blocking read): an unknown id in a tool is a 400 when the tool is set.
KnownLibraries = Callable[[str, Sequence[str]], set[str]]


class Retriever(Protocol):
    async def search(self, workspace_id: str, library_ids: Sequence[str], query: str,
                     k: int | None = None) -> list[Retrieved]: ...


def library_ids(tools: Iterable[dict[str, Any]]) -> list[str]:
    """The library ids of the ``document_library`` tools among ``tools`` (API tool objects), each once."""
    ids = (i for t in tools if t.get("type") == TOOL_NAME for i in t.get("library_ids") or ())
    return list(dict.fromkeys(ids))


def check_library_tools(workspace_id: str, tools: Iterable[dict[str, Any]], known: KnownLibraries) -> None:
    """A 400 naming the first library id that is not a library of the workspace (another workspace's too)."""
    wanted = library_ids(tools)
    found = known(workspace_id, wanted) if wanted else set()
    missing = [i for i in wanted if i not in found]
    if missing:
        raise BadRequest(f"library {missing[0]!r} of the document_library tool was not found in this workspace",
                         code="LIBRARY_NOT_FOUND", param="tools")


def user_text(entries: Iterable[dict[str, Any]]) -> str:
    """The text of the user's ``message.input`` entries (the query of a turn): text chunks only, one a line."""
    texts = []
    for e in entries:
        if e.get("type") == "message.input" and e.get("role") == "user":
            content = e.get("content")
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(c.get("text", "") for c in content or ()
                             if isinstance(c, dict) and c.get("type") == "text")
    return "\n".join(t for t in texts if t.strip())


@dataclass(slots=True)
class LibraryTool:
    """What a turn needs to run the tool (``search``) and a request to check its tools (``known``)."""

    search: Retriever
    known: KnownLibraries

    async def check(self, workspace_id: str, tools: Sequence[dict[str, Any]]) -> None:
        await run_sync(check_library_tools, workspace_id, tools, self.known)

    async def run(self, workspace_id: str, ids: Sequence[str], query: str) -> tuple[str, dict[str, Any]]:
        """The execution's ``arguments`` (a JSON string) and ``info`` (what was retrieved, best first)."""
        found = await self.search.search(workspace_id, ids, query)
        results = [{"document_id": r.hit.document_id, "document_name": r.document_name,
                    "library_id": r.hit.library_id, "chunk_index": r.hit.index, "page": r.hit.page,
                    "score": round(float(r.hit.score), 6), "text": r.hit.text} for r in found]
        arguments = json.dumps({"query": query, "library_ids": list(ids)}, ensure_ascii=False)
        return arguments, {"results": results}


def context_text(info: dict[str, Any] | None) -> str:
    """The tool result the model reads: the chunks numbered from 1, so it can cite them as [1], [2]... The request
    to answer comes last: small models follow what they read last, and otherwise echo the passages."""
    results = (info or {}).get("results") or []
    if not results:
        return "The document library has nothing relevant to this question. Answer without it."
    blocks = [f"[{n}] from {r.get('document_name', '')!r} (part {int(r.get('chunk_index', 0)) + 1}):\n"
              f"{r.get('text', '')}" for n, r in enumerate(results, 1)]
    return ("Passages found in the document library, best first:\n\n" + "\n\n".join(blocks)
            + "\n\nAnswer the question from these passages, citing them by number, e.g. [1].")


def references(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One ``tool_reference`` chunk per retrieved document, in the order of its best chunk."""
    seen: dict[str, dict[str, Any]] = {}
    for r in (info or {}).get("results") or []:
        if r["document_id"] not in seen:
            text = " ".join(str(r.get("text", "")).split())
            snippet = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"
            seen[r["document_id"]] = {"type": "tool_reference", "tool": TOOL_NAME, "title": r["document_name"],
                                      "description": snippet}
    return list(seen.values())
