"""Shared CLI plumbing: settings from the global flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mistral_gateway.config import Settings, load_settings

__all__ = ["add_location_args", "bounded_int", "settings_from"]


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer within [low, high], else argparse's usage error (never a traceback)."""
    def parse(text: str) -> int:
        text = text.strip()
        if not (text.isascii() and text.removeprefix("-").isdigit() and len(text) <= 20):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    # Sub-commands may repeat --data-dir/--config after their name; either position works.
    return load_settings(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None), **overrides)


def add_location_args(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``/``--config`` after the sub-command too (SUPPRESS keeps a value given before it)."""
    parser.add_argument("--data-dir", default=argparse.SUPPRESS)
    parser.add_argument("--config", default=argparse.SUPPRESS)
