"""Callables named in settings as ``"package.module:function"`` (job handlers, the limiter's clock)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["load_callable"]


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> that callable; ValueError naming ``what`` otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} {spec!r} must look like 'package.module:function'")
    found = getattr(importlib.import_module(module_name), attr, None)
    if not callable(found):
        raise ValueError(f"{what} {spec!r} is not a callable")
    return found
