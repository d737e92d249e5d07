"""Scoring programs on data splits."""

from __future__ import annotations

from agentsearch.evaluators._evaluator import Evaluator, ExampleOutcome
from agentsearch.evaluators._sandbox import (
    AgentLimits,
    AgentRun,
    SandboxResult,
    run_agent,
    run_python,
)

__all__ = ["AgentLimits", "AgentRun", "Evaluator", "ExampleOutcome", "SandboxResult", "run_agent", "run_python"]
