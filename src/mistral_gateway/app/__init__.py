"""The application layer: one callable path per operation, shared by the HTTP handlers and the job runner.

Entry point::

    app = Application(services)
    result = await app.call(principal, "create_chat_completions", request, dialect="native")

``principal`` is who pays (workspace, token id, limits: ``services.tokens.Principal``); ``request`` the parsed
request model of the operation's registry row. ``call`` checks the scope, admits the request against the rate
limits (429), resolves the model (local engine, or the model's upstream routes with fallback, as the row's
``upstream`` kind says), runs blocking work off the event loop, fills the ``Meter``, records one usage row and
settles tokens-per-minute budgets. It returns a result without HTTP types (``app.results``): a pydantic model or
``RawJSON`` (JSON), ``StreamResult``/``RawEvents`` (SSE, metered and finished when the stream ends), ``BinaryResult``
or ``NoContent``; errors are raised as ``mistral_gateway.errors`` classes (recorded with their status).

Batch jobs use the adapter with the ``execute(endpoint, body) -> (status, body)`` shape the batch runner takes::

    execute = functools.partial(app.execute_for_batch, principal)
    status, body = await execute("/v1/chat/completions", {"model": ..., "messages": [...]})

It answers any endpoint the registry marks ``batchable`` (``registry.by_path("POST", endpoint)``) with the HTTP
status and the JSON body in the native dialect, errors included (422 ``{"detail": [...]}``, else
``{"object": "error", ...}``), billed, routed and limited exactly as the same request over HTTP.

Every implemented operation has one function here (``app.operations.OPERATIONS`` by registry id: the model calls
in ``app.operations``, files, models and batch jobs in ``app.resources``), taking a ``Context`` (services, row,
principal, meter, ``path`` parameters, parsed ``query``) and the parsed body::

    result = await app.call(principal, "retrieve_file", path={"file_id": file_id})
    result = await app.call(principal, "list_files", query=ListFilesQuery(page_size=10))

Its return annotation declares what it answers, and ``Application(services)`` refuses to start unless that fits the
row (``app.kinds``: the response kind, streaming and its chunk model, the response model). HTTP handlers
(``http/handlers``) only parse, call and hand the result to the endpoint, which renders it as the row says.
"""

from __future__ import annotations

from mistral_gateway.app.application import Application
from mistral_gateway.app.metering import Exchange, Meter
from mistral_gateway.app.results import BinaryResult, NoContent, RawEvents, RawJSON, Result, StreamResult

__all__ = ["Application", "BinaryResult", "Exchange", "Meter", "NoContent", "RawEvents", "RawJSON", "Result",
           "StreamResult"]
