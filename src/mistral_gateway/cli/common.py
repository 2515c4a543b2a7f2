"""Shared CLI plumbing: settings from the global flags."""

from __future__ import annotations

import argparse
from typing import Any

from mistral_gateway.config import Settings, load_settings

__all__ = ["add_location_args", "settings_from"]


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    # Sub-commands may repeat --data-dir/--config after their name; either position works.
    return load_settings(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None), **overrides)


def add_location_args(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``/``--config`` after the sub-command too (SUPPRESS keeps a value given before it)."""
    parser.add_argument("--data-dir", default=argparse.SUPPRESS)
    parser.add_argument("--config", default=argparse.SUPPRESS)
