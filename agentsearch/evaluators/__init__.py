"""Scoring programs on data splits."""

from __future__ import annotations

from agentsearch._lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__, {
    "agentsearch.evaluators._evaluator": ("Evaluator", "ExampleOutcome", "SampleRound", "sample_round"),
    "agentsearch.evaluators._isolation": ("Isolation", "IsolationUnavailableError", "isolation"),
    "agentsearch.evaluators._sandbox": ("AgentLimits", "AgentRun", "SandboxResult", "check_request", "run_agent",
                                        "run_python"),
})
