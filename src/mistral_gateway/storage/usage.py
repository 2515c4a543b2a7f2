"""Usage records: appended in batches, listed newest first, aggregated by one column."""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, String, bindparam, case, func, insert, select
from sqlalchemy.exc import DataError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.records import UsageRecord, UsageSummary, UsageTuple, usage_row
from mistral_gateway.storage.tables import UsageRow

__all__ = ["GROUPS", "UsageRepository"]


GROUPS = {"token": UsageRow.token_id, "model": UsageRow.model, "operation": UsageRow.operation,
          "workspace": UsageRow.workspace, "backend": UsageRow.backend}
_FIELDS = [f.name for f in dataclasses.fields(UsageRecord) if f.name != "id"]
_ROWS_PER_STATEMENT = 500  # x 12 columns, well under SQLite's 32766 bound parameters


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        # SQLite's sum() raises on integer overflow (a 500 on absurd upstream counts); its total() cannot.
        # PostgreSQL's sum() of bigints is a numeric and does not overflow.
        self._sum = func.total if db.engine.dialect.name == "sqlite" else func.sum
        # The INSERT compiled once for this database's driver. On SQLite one statement carries many rows: the
        # driver releases the GIL around every statement it steps, and a per-row executemany made the writer
        # thread and the event loop trade the GIL thousands of times a second (latency spikes under load).
        compiled = insert(UsageRow).inline().values({name: bindparam(name) for name in _FIELDS}).compile(
            dialect=db.engine.dialect)
        self._insert_sql = str(compiled)
        self._positions = list(compiled.positiontup or []) if compiled.positional else None
        self._row_values: str | None = None
        if db.engine.dialect.name == "sqlite" and self._positions is not None:
            head, _, values = self._insert_sql.partition(" VALUES ")
            self._insert_head, self._row_values = head + " VALUES ", values
        # rows arrive in _FIELDS order; the compiled statement may want another
        order = [_FIELDS.index(name) for name in (self._positions or _FIELDS)]
        self._reorder = None if order == list(range(len(_FIELDS))) else operator.itemgetter(*order)

    def add_many(self, records: Sequence[UsageRecord]) -> None:
        self.add_rows([usage_row(r) for r in records])

    def add_rows(self, rows: Sequence[UsageTuple]) -> None:
        """Store rows given as ``usage_row`` tuples."""
        if not rows:
            return
        try:
            self._insert(rows)
        except (OverflowError, DataError):
            # Token counts come from upstreams too; one absurd count must not wedge the whole queue (the batch
            # would be retried forever). Clamped here, off the request path, instead of checked per request.
            # SQLite's driver raises OverflowError past 64 bits; PostgreSQL refuses any value outside the column
            # (DataError: a number out of range, a string longer than its VARCHAR).
            self._insert([tuple(clamp(v) for clamp, v in zip(_CLAMPS, r, strict=True)) for r in rows])

    def _insert(self, rows: Sequence[UsageTuple]) -> None:
        if self._reorder is not None:
            rows = [self._reorder(r) for r in rows]
        with self._db.engine.begin() as conn:
            if self._row_values is not None:
                for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                    chunk = rows[start:start + _ROWS_PER_STATEMENT]
                    sql = self._insert_head + ", ".join([self._row_values] * len(chunk))
                    conn.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(chunk)))
            elif self._positions is not None:
                conn.exec_driver_sql(self._insert_sql, list(rows))
            else:
                conn.exec_driver_sql(self._insert_sql, [dict(zip(_FIELDS, r, strict=True)) for r in rows])

    def list(self, *, since: int | None = None, until: int | None = None, limit: int = 100,
             offset: int = 0) -> tuple[list[UsageRecord], int]:
        """Newest first, and how many match in all."""
        where = _between(since, until)
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(UsageRow).where(*where)) or 0
            rows = s.scalars(select(UsageRow).where(*where).order_by(UsageRow.id.desc()).limit(limit)
                             .offset(offset)).all()
            return [UsageRecord(**{name: getattr(r, name) for name in _FIELDS}, id=r.id) for r in rows], total

    def summary(self, by: str, *, since: int | None = None, until: int | None = None) -> list[UsageSummary]:
        """One row per value of ``by`` (a key of ``GROUPS``), the most requested first."""
        column = GROUPS[by]
        requests = func.count()
        query = (select(column, requests, func.sum(case((UsageRow.status >= 400, 1), else_=0)),
                        self._sum(UsageRow.prompt_tokens), self._sum(UsageRow.completion_tokens),
                        func.avg(UsageRow.latency_ms))
                 .where(*_between(since, until)).group_by(column).order_by(requests.desc(), column))
        with self._db.session() as s:
            return [UsageSummary(key, int(n), int(errors or 0), int(prompt or 0), int(completion or 0),
                                 round(float(latency or 0.0), 3))
                    for key, n, errors, prompt, completion, latency in s.execute(query)]


def _between(since: int | None, until: int | None) -> list[ColumnElement[Any]]:
    where: list[ColumnElement[Any]] = []
    if since is not None:
        where.append(UsageRow.created_at >= since)
    if until is not None:
        where.append(UsageRow.created_at < until)
    return where


def _clamp_for(kind: TypeEngine[Any]) -> Callable[[Any], Any]:
    """What a column of this type holds on every backend (SQLite would take more; PostgreSQL would refuse it)."""
    if isinstance(kind, Integer):
        bound = 2**63 - 1 if isinstance(kind, BigInteger) else 2**31 - 1
        return lambda v: max(-bound, min(bound, v)) if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(kind, Float):  # inf and nan: SQLite would store NULL or fail
        return lambda v: v if not isinstance(v, float) or -1e300 < v < 1e300 else 0.0
    if isinstance(kind, String) and kind.length:
        length = kind.length
        # PostgreSQL's text holds no NUL character (an upstream's model name might carry one)
        return lambda v: v.replace("\x00", "")[:length] if isinstance(v, str) else v
    return lambda v: v


_CLAMPS = tuple(_clamp_for(UsageRow.__table__.c[name].type) for name in _FIELDS)
