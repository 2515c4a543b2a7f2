"""The benchmark suites, by name. To add one: a module here with ``run(config) -> list[Row]``, listed below."""

from __future__ import annotations

from core import Suite

from . import (
    batch,
    chat,
    conversations,
    embeddings,
    fine_tuning,
    library_ingest,
    library_search,
    limits,
    models,
    moderation,
    ocr,
    proxy,
    realtime,
    speech,
    transcription,
    workers,
)

__all__ = ["SUITES"]

SUITES: dict[str, Suite] = {
    "models": models.run,
    "embeddings": embeddings.run,
    "chat": chat.run,
    "proxy": proxy.run,
    "batch": batch.run,
    "moderation": moderation.run,
    "speech": speech.run,
    "realtime": realtime.run,
    "ocr": ocr.run,
    "transcription": transcription.run,
    "conversations": conversations.run,
    "fine_tuning": fine_tuning.run,
    "library_ingest": library_ingest.run,
    "library_search": library_search.run,
    "limits": limits.run,
    "workers": workers.run,
}
