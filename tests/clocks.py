"""Clocks a server started as a subprocess can be given by name (``limits_clock = "clocks:..."``, with ``tests`` on
its PYTHONPATH)."""

from __future__ import annotations

MINUTE_START = 1_700_000_040.0  # 2023-11-14 22:14:00 UTC, the start of a rate-limit minute
PINNED = MINUTE_START + 10


def pinned_in_a_minute() -> float:
    """Always ten seconds into the same minute: every request falls in one rate-limit window, whenever the test
    runs and however long it takes, and a refusal's Retry-After is exactly the minute's remaining 50 s."""
    return PINNED
