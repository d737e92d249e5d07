"""Hooks a search calls as it goes; the CLI's progress display is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentsearch.evaluators import ExampleOutcome
    from agentsearch.store import CandidateRecord, EvaluationRecord, RunUsage


class SearchCallback:
    """Subclass and override what you need; every method is a no-op here. Called from one thread."""

    def on_phase(self, message: str) -> None:
        """A new stage of the run starts (seed evaluation, bootstrapping, proposing, searching, testing)."""

    def on_evaluation_start(self, candidate: CandidateRecord, split: str, total: int, done: int) -> None:
        """``done`` examples of ``total`` were already stored (a resumed evaluation)."""

    def on_example(self, outcome: ExampleOutcome, usage: RunUsage) -> None:
        """One example finished; ``usage`` is the run's total so far."""

    def on_evaluation_end(self, candidate: CandidateRecord, evaluation: EvaluationRecord, best_dev: float | None) -> None:
        """A split's evaluation completed; ``best_dev`` is the best dev score so far."""
