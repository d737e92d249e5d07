"""``package.module:function`` references: how a task file names user code (metrics, tools, rewards,
the program to search).

Code handed over in memory (``AgentSearch.compile``'s program and metric) gets a reference of the
form ``object:<name>`` that resolves in this process only: the store keeps the name, never the
object (nothing is pickled), and another process asked for it says so."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentsearch.exceptions import TaskSpecError

IN_PROCESS = "object:"
_OBJECTS: dict[str, Callable[..., Any]] = {}


def in_process_reference(name: str, function: Callable[..., Any]) -> str:
    """A reference to ``function`` valid in this process; the same name given again points at the new function."""
    _OBJECTS[name] = function
    return f"{IN_PROCESS}{name}"


def resolve_callable(reference: str, *, base_dir: Path | None = None, what: str = "function") -> Callable[..., Any]:
    """Import the function; ``base_dir`` (the task file's folder) goes on ``sys.path`` so local modules resolve."""
    if reference.startswith(IN_PROCESS):
        try:
            return _OBJECTS[reference.removeprefix(IN_PROCESS)]
        except KeyError:
            raise TaskSpecError(f"{what} {reference!r} was handed over in another process's memory (AgentSearch.compile):"
                                " only that process can run it") from None
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
