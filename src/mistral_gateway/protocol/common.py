"""Base models shared by every API area."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SIGNED_URL_MAX_HOURS", "RequestModel", "ResponseModel"]

# The default of the ``signed_url_max_hours`` setting; here so the documents (built by client code too) can state it.
SIGNED_URL_MAX_HOURS = 24 * 7


class RequestModel(BaseModel):
    """Request bodies and query strings: unknown fields are ignored, because the official SDK sends fields
    that Mistral's published spec lacks (a strict server would answer 422 to the current SDK)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResponseModel(BaseModel):
    """Response bodies: extra fields are allowed so upstream bodies relay unchanged."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
