"""agentsearch: search prompts, modules and agent programs for a task, keeping every evaluation in a database."""

from __future__ import annotations

from agentsearch._callbacks import SearchCallback
from agentsearch._optimize import CandidateResult, OptimizeResult, optimize
from agentsearch.exceptions import AgentSearchError
from agentsearch.search_space import CandidateSpec, load_program, save_program
from agentsearch.store import get_storage
from agentsearch.task import Task, load_task

__all__ = [
    "AgentSearchError",
    "CandidateResult",
    "CandidateSpec",
    "OptimizeResult",
    "SearchCallback",
    "Task",
    "get_storage",
    "load_program",
    "load_task",
    "optimize",
    "save_program",
]
