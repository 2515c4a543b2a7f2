"""The contract test's producers for the library operations (``tests/api/test_contract.py`` runs them): each makes
real requests in one dialect and checks the answers against Mistral's spec with the test's ``check``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["library_producers"]

Api = Any  # test_contract.Api: ``call(op_id, dialect, values, **kwargs)``


def library_producers(check: Callable[..., Any]) -> dict[str, Callable[[Any, str], None]]:
    """The producers by operation id, checking with ``check(op_id, dialect, response, status=None)``."""

    def _library(api: Api, dialect: str, **fields: Any) -> dict[str, Any]:
        return check("create_library", dialect, api.call("create_library", dialect, json={"name": "docs", **fields}))


    def _document(api: Api, dialect: str, library_id: str, text: bytes = b"# Notes\n\nThe sky is green here.\n",
                  name: str = "notes.md") -> dict[str, Any]:
        r = api.call("create_library_document", dialect, {"library_id": library_id}, files={"file": (name, text)})
        return check("create_library_document", dialect, r)


    def _create_library(api: Api, dialect: str) -> None:
        out = _library(api, dialect, description="d", chunk_size=500)
        assert (out["name"], out["description"], out["chunk_size"], out["nb_documents"]) == ("docs", "d", 500, 0)


    def _list_libraries(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        body = check("list_libraries", dialect, api.call("list_libraries", dialect))
        assert library_id in [lib["id"] for lib in body["data"]]


    def _get_library(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        _document(api, dialect, library_id)
        body = check("get_library", dialect, api.call("get_library", dialect, {"library_id": library_id}))
        assert (body["id"], body["nb_documents"], body["total_size"]) == (library_id, 1, 32)


    def _update_library(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect, description="d")["id"]
        body = check("update_library", dialect, api.call("update_library", dialect, {"library_id": library_id},
                                                         json={"name": "renamed"}))
        assert (body["name"], body["description"]) == ("renamed", "d")


    def _delete_library(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        body = check("delete_library", dialect, api.call("delete_library", dialect, {"library_id": library_id}))
        assert body["id"] == library_id
        assert api.call("get_library", dialect, {"library_id": library_id}).status_code == 404


    def _list_documents(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        ids = [_document(api, dialect, library_id, f"text {i}".encode(), f"n{i}.txt")["id"] for i in range(3)]
        body = check("list_library_documents", dialect, api.call("list_library_documents", dialect,
                                                                 {"library_id": library_id},
                                                                 params={"page_size": 2, "page": 1}))
        assert [d["id"] for d in body["data"]] == ids[:1]  # newest first
        assert body["pagination"] == {"total_items": 3, "total_pages": 2, "current_page": 1, "page_size": 2,
                                      "has_more": False}


    def _upload_document(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        out = _document(api, dialect, library_id)
        assert (out["name"], out["size"], out["library_id"]) == ("notes.md", 32, library_id)
        again = check("create_library_document", dialect, api.call(  # the same bytes: the document already there
            "create_library_document", dialect, {"library_id": library_id},
            files={"file": ("copy.md", b"# Notes\n\nThe sky is green here.\n")}), status=200)
        assert again["id"] == out["id"]


    def _get_document(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        values = {"library_id": library_id, "document_id": _document(api, dialect, library_id)["id"]}
        body = check("get_library_document", dialect, api.call("get_library_document", dialect, values))
        assert body["id"] == values["document_id"] and body["processing_status"] in ("Running", "Completed")


    def _delete_document(api: Api, dialect: str) -> None:
        library_id = _library(api, dialect)["id"]
        values = {"library_id": library_id, "document_id": _document(api, dialect, library_id)["id"]}
        r = api.call("delete_library_document", dialect, values)
        assert r.status_code == 204 and r.content == b""
        assert api.call("get_library_document", dialect, values).status_code == 404


    def _processed(api: Api, dialect: str) -> dict[str, str]:
        """A library holding one document that processing has finished (a bounded wait on the job runner)."""
        library_id = _library(api, dialect)["id"]
        values = {"library_id": library_id, "document_id": _document(api, dialect, library_id)["id"]}
        for _ in range(600):
            status = api.call("get_library_document_status", "native", values).json()["process_status"]
            if status not in ("todo", "in_progress"):
                break
            time.sleep(0.05)
        assert status == "done", status
        return values


    def _update_document(api: Api, dialect: str) -> None:
        values = _processed(api, dialect)
        attributes = {"year": 2024, "tags": ["a", "b"], "draft": False, "score": 0.5, "when": "2024-01-02T00:00:00Z"}
        body = check("update_library_document", dialect, api.call(
            "update_library_document", dialect, values, json={"name": "renamed.md", "attributes": attributes}))
        assert (body["name"], body["attributes"], body["process_status"]) == ("renamed.md", attributes, "done")


    def _document_text(api: Api, dialect: str) -> None:
        body = check("get_library_document_text_content", dialect,
                     api.call("get_library_document_text_content", dialect, _processed(api, dialect)))
        assert "The sky is green here." in body["text"]


    def _document_status(api: Api, dialect: str) -> None:
        values = _processed(api, dialect)
        body = check("get_library_document_status", dialect,
                     api.call("get_library_document_status", dialect, values))
        assert body == {"document_id": values["document_id"], "process_status": "done",
                        "processing_status": "Completed"}


    def _reprocess_document(api: Api, dialect: str) -> None:
        values = _processed(api, dialect)
        r = api.call("reprocess_library_document", dialect, values)
        assert r.status_code == 204 and r.content == b""
        assert api.call("get_library_document_status", "native", values).json()["process_status"] in (
            "todo", "in_progress", "done")

    return {
        "list_libraries": _list_libraries,
        "create_library": _create_library,
        "get_library": _get_library,
        "update_library": _update_library,
        "delete_library": _delete_library,
        "list_library_documents": _list_documents,
        "create_library_document": _upload_document,
        "get_library_document": _get_document,
        "delete_library_document": _delete_document,
        "update_library_document": _update_document,
        "get_library_document_text_content": _document_text,
        "get_library_document_status": _document_status,
        "reprocess_library_document": _reprocess_document,
    }
