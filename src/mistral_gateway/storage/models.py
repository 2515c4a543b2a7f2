"""Fine-tuned models per workspace (base models come from the configured catalog, not the database)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import delete, select, update

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import Epoch
from mistral_gateway.storage.records import FineTunedModelRecord
from mistral_gateway.storage.tables import FineTunedModelRow

__all__ = ["FineTunedModelRepository"]

_UPDATABLE = frozenset({"name", "description", "archived"})


class FineTunedModelRepository:
    """Every write bumps ``epoch`` so model listings cached in any process on this node are dropped at once."""

    def __init__(self, db: Database, epoch: Epoch) -> None:
        self._db = db
        self.epoch = epoch

    def add(self, record: FineTunedModelRecord) -> None:
        values = dataclasses.asdict(record)
        values["capabilities"] = list(record.capabilities)
        with self._db.session() as s:
            s.add(FineTunedModelRow(**values))
        self.epoch.bump()

    def list(self, workspace_id: str) -> list[FineTunedModelRecord]:
        with self._db.session() as s:
            rows = s.scalars(select(FineTunedModelRow).where(FineTunedModelRow.workspace_id == workspace_id)
                             .order_by(FineTunedModelRow.created_at, FineTunedModelRow.id))
            return [_record(r) for r in rows]

    def get(self, workspace_id: str, model_id: str) -> FineTunedModelRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(FineTunedModelRow).where(FineTunedModelRow.workspace_id == workspace_id,
                                                           FineTunedModelRow.id == model_id))
            return _record(row) if row else None

    def update(self, workspace_id: str, model_id: str, **values: str | bool | None) -> FineTunedModelRecord | None:
        """Set ``values`` (name, description, archived) on one model of the workspace; None: no such model."""
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"fine-tuned models cannot change {sorted(unknown)}")
        with self._db.session() as s:
            if values:
                s.execute(update(FineTunedModelRow).where(FineTunedModelRow.workspace_id == workspace_id,
                                                          FineTunedModelRow.id == model_id).values(**values))
            row = s.scalar(select(FineTunedModelRow).where(FineTunedModelRow.workspace_id == workspace_id,
                                                           FineTunedModelRow.id == model_id))
            record = _record(row) if row else None
        if record is not None and values:
            self.epoch.bump()
        return record

    def delete(self, workspace_id: str, model_id: str) -> bool:
        with self._db.session() as s:
            result = s.execute(delete(FineTunedModelRow).where(FineTunedModelRow.workspace_id == workspace_id,
                                                               FineTunedModelRow.id == model_id))
            deleted = bool(result.rowcount)
        if deleted:
            self.epoch.bump()
        return deleted


def _record(row: FineTunedModelRow) -> FineTunedModelRecord:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(FineTunedModelRecord)}
    values["capabilities"] = tuple(values["capabilities"])
    return FineTunedModelRecord(**values)
