"""``package.module:function`` references: how a task file names user code (metrics, tools, rewards)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentsearch.exceptions import TaskSpecError


def resolve_callable(reference: str, *, base_dir: Path | None = None, what: str = "function") -> Callable[..., Any]:
    """Import the function; ``base_dir`` (the task file's folder) goes on ``sys.path`` so local modules resolve."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise TaskSpecError(f"{what} {reference!r} is not a 'package.module:function' reference")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TaskSpecError(f"cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise TaskSpecError(f"{module_name!r} has no function {attribute!r}")
    return function
