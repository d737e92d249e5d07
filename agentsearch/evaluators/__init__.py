"""Scoring programs on data splits."""

from __future__ import annotations

from agentsearch.evaluators._evaluator import Evaluator, ExampleOutcome

__all__ = ["Evaluator", "ExampleOutcome"]
