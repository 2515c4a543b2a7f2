"""Usage records: queued in memory on the request path, written in batches by one background thread.

``record`` only appends to a deque (no I/O, safe from the event loop). The writer thread flushes every
``flush_seconds`` and ``close`` flushes what is left, so a clean shutdown loses nothing. If the database refuses a
batch, it is kept for the next attempt, up to ``max_pending`` records (the oldest are dropped beyond that).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from datetime import UTC, date, datetime

from mistral_gateway.background import BackgroundThread
from mistral_gateway.echo import shorten
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.admin import MAX_USAGE_LIMIT, MAX_USAGE_PAGE
from mistral_gateway.storage.records import UsageRecord, UsageSummary, UsageTuple, usage_row
from mistral_gateway.storage.usage import GROUPS, UsageRepository

__all__ = ["GROUPS", "UsageLog", "parse_time"]

log = logging.getLogger("mistral_gateway.usage")

_RELATIVE = re.compile(r"^([0-9]{1,12})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: every time argument stays within what SQLite and datetime hold


def parse_time(value: str, *, now: float, param: str = "since") -> int:
    """Unix seconds from unix seconds, an ISO 8601 date or date-time (UTC unless it says otherwise), or a span
    back from now: ``90s``, ``15m``, ``24h``, ``7d``, ``2w``. Raises BadRequest outside 1970-01-01..9999-12-31."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _in_range(seconds, value, param)
    relative = _RELATIVE.match(text)
    if relative:
        return _in_range(int(now) - int(relative.group(1)) * _UNITS[relative.group(2)], value, param)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return _in_range(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp(), value, param)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{param}={shorten(value)!r} is not a time: use unix seconds, an ISO date or date-time "
                         "(2026-01-31, 2026-01-31T12:00:00Z) or a span back from now (15m, 24h, 7d)",
                         param=param) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _in_range(moment.timestamp(), value, param)


def _in_range(seconds: float, value: str, param: str) -> int:
    if not 0 <= seconds <= MAX_TIME:  # also false for nan; inf and 1e400 land here instead of an OverflowError
        raise BadRequest(f"{param}={shorten(value)!r} is out of range: times must fall between 1970-01-01 and "
                         "9999-12-31", param=param)
    return int(seconds)


class UsageLog:
    def __init__(self, repo: UsageRepository, *, flush_seconds: float = 1.0, max_pending: int = 100_000) -> None:
        self._repo = repo
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pending: deque[UsageTuple] = deque()
        self._flush_lock = threading.Lock()  # one writer at a time: the thread, close() or a reader's flush
        self._writer = BackgroundThread(self._run, "usage-writer", join_timeout=max(5.0, flush_seconds * 2))
        self.dropped = 0

    def record(self, record: UsageRecord) -> None:
        """Queue one record (event-loop safe); the writer thread (``start``) or ``close``/``flush`` writes it."""
        self.record_row(usage_row(record))

    def record_row(self, row: UsageTuple) -> None:
        """Queue one ``usage_row`` tuple: the request path's form (no object per request for the GC to track)."""
        self._pending.append(row)
        if len(self._pending) > self.max_pending:
            self._drop_oldest()

    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write every queued record now (blocking). Returns how many were written."""
        with self._flush_lock:
            batch: list[UsageTuple] = []
            while self._pending:
                try:
                    batch.append(self._pending.popleft())
                except IndexError:  # pragma: no cover - emptied concurrently
                    break
            if not batch:
                return 0
            try:
                self._repo.add_rows(batch)
            except Exception:
                self._pending.extendleft(reversed(batch))  # keep order; retried at the next flush
                if len(self._pending) > self.max_pending:
                    self._drop_oldest()
                raise
            return len(batch)

    def start(self) -> None:
        """Start the writer thread (the service container's lifecycle calls this once; idempotent)."""
        self._writer.start()

    def stop(self) -> None:
        """Stop the writer thread and write what is still queued."""
        self.close()

    def close(self) -> None:
        self._writer.stop()
        try:
            self.flush()
        except Exception:
            log.exception("writing %d usage record(s) at shutdown failed", len(self._pending))

    def list(self, *, since: int | None = None, until: int | None = None, limit: int = 100,
             page: int = 0) -> tuple[list[UsageRecord], int]:
        """Newest first (this process's queued records are written first, so they are included)."""
        if not (1 <= limit <= MAX_USAGE_LIMIT and 0 <= page <= MAX_USAGE_PAGE):
            raise BadRequest(f"limit must be between 1 and {MAX_USAGE_LIMIT} and page between 0 and {MAX_USAGE_PAGE}",
                             param="page" if 1 <= limit <= MAX_USAGE_LIMIT else "limit")
        self.flush()
        return self._repo.list(since=since, until=until, limit=limit, offset=page * limit)

    def summary(self, by: str, *, since: int | None = None, until: int | None = None) -> list[UsageSummary]:
        if by not in GROUPS:
            raise BadRequest(f"by={by!r} is not one of {', '.join(GROUPS)}", param="by")
        self.flush()
        return self._repo.summary(by, since=since, until=until)

    def _run(self) -> None:
        while not self._writer.stopping.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:
                log.exception("writing usage records failed; %d kept for the next attempt", len(self._pending))

    def _drop_oldest(self) -> None:
        before = self.dropped
        while len(self._pending) > self.max_pending:
            try:
                self._pending.popleft()
            except IndexError:  # pragma: no cover
                break
            self.dropped += 1
        if before == 0 or before // 10_000 != self.dropped // 10_000:
            log.warning("usage queue full (database unavailable?): %d record(s) dropped so far", self.dropped)
