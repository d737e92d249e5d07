"""A search run: its lifecycle, evaluation with pruning, the one loop over every level, its result."""

from __future__ import annotations

from agentsearch.run._lifecycle import (
    RESUMABLE_CHANGES,
    Stopped,
    Terminated,
    open_run,
    optimize,
    stored_task,
    work,
)
from agentsearch.run._loop import Stage, level_of, plan
from agentsearch.run._result import OptimizeResult, program_metadata
from agentsearch.run._setup import planned_space, seed_spec

__all__ = [
    "RESUMABLE_CHANGES",
    "OptimizeResult",
    "Stage",
    "Stopped",
    "Terminated",
    "level_of",
    "open_run",
    "optimize",
    "plan",
    "planned_space",
    "program_metadata",
    "seed_spec",
    "stored_task",
    "work",
]
