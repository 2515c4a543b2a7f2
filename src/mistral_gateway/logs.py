"""Log output: today's text lines or one JSON object per line (``log_format``), each carrying the request id of
the request being handled when it was written.

The request id lives in a context variable (the one module-level object here: a ``ContextVar`` must be created
once, and each request's task sees only its own value; threads started with ``run_sync`` copy it). The HTTP front
door sets it; a filter on the handler copies it onto every record, so services log as usual and never see HTTP.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

__all__ = ["REQUEST_ID", "JsonFormatter", "RequestIdFilter", "TextFormatter", "configure_logging"]

REQUEST_ID: ContextVar[str | None] = ContextVar("mistral_gateway_request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on every record the handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """Today's line, plus `` request_id=…`` when written while handling a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, pid, request_id inside a request,
    the record's ``fields`` (``extra={"fields": {...}}``: the access log's client, method, path, status,
    duration_ms) and the traceback as ``exc``. The message is formatted as in text, so redaction done before
    logging holds in both formats."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                entry.setdefault(name, value)  # never overrides the fixed keys above
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: str) -> None:
    """The root logger writes to stderr in ``log_format``; replaces handlers set earlier (a uvicorn worker process
    calls this again in its app factory)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # engines' loopback calls to llama.cpp are not news
    if log_format == "json":
        # uvicorn's own loggers write through the root handler too (serve passes log_config=None for json)
        for name in ("uvicorn", "uvicorn.error"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
