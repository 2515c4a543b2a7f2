"""The moderation model on the fake classifier engine, for tests that need one in a fake-engine catalog."""

from __future__ import annotations

from mistral_gateway.config import ModelEntry

__all__ = ["MODERATION_MODEL", "with_fake_moderation"]

MODERATION_MODEL = "mistral-moderation-latest"


def with_fake_moderation(models: list[ModelEntry]) -> list[ModelEntry]:
    """``models`` (already on fake engines) plus a fake moderation entry unless one of them serves moderation."""
    if any("moderation" in m.capabilities for m in models):
        return models
    return [*models, ModelEntry(id="mistral-moderation-2411", aliases=[MODERATION_MODEL], engine="fake",
                                capabilities=["moderation", "classification"], max_context_length=256)]
