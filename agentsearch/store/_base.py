"""The experiment store's contract and the frozen records it returns.

Implementations must be safe to call from several threads. Finished evaluations are immutable:
once ``complete_evaluation`` has run (complete or pruned), its per-example results and aggregate never change, which is
what lets a resumed run trust them instead of paying for them again.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentsearch.evaluators import ExampleOutcome


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    task_name: str
    status: str  # running | finished | stopped | interrupted | failed
    stop_reason: str | None
    task: dict[str, Any]
    space: dict[str, Any] | None
    proposer_lm_calls: int
    proposer_tokens: int
    proposer_cost_usd: float
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class CandidateRecord:
    id: int
    run_id: int
    number: int
    spec: dict[str, Any]
    spec_hash: str
    level: str
    optimizer: str
    parents: tuple[int, ...]
    trial_number: int | None
    status: str  # pending | complete | pruned | failed (would not run; see note)
    note: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    candidate_id: int
    split: str
    status: str  # running | complete | pruned (stopped early: it could not beat the best; see note)
    score: float | None
    """Mean over the ``n`` examples scored (all of the split unless pruned)."""
    n: int
    n_errors: int
    lm_calls: int
    tokens: int
    cost_usd: float
    wall_s: float
    note: str | None
    """Why a pruned evaluation was stopped."""
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class ExampleResultRecord:
    evaluation_id: int
    example_id: str
    prediction: dict[str, Any] | None
    score: float
    error: str | None
    lm_calls: int
    """Calls paid for (DSPy's cache answered the others)."""
    program_calls: int
    """Calls the program made, cached ones included: its cost per input, whatever ran before it."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float


@dataclass(frozen=True)
class RunUsage:
    lm_calls: int
    tokens: int
    cost_usd: float


class BaseStorage(abc.ABC):
    """Where runs, candidates, evaluations and per-example results live."""

    url: str

    # runs
    @abc.abstractmethod
    def create_run(self, name: str, task_name: str, task: dict[str, Any]) -> RunRecord: ...

    @abc.abstractmethod
    def get_run(self, name_or_id: str | int) -> RunRecord | None: ...

    @abc.abstractmethod
    def list_runs(self) -> list[RunRecord]: ...

    @abc.abstractmethod
    def set_run_space(self, run_id: int, space: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def set_run_status(self, run_id: int, status: str, stop_reason: str | None = None) -> None: ...

    @abc.abstractmethod
    def add_proposer_usage(self, run_id: int, lm_calls: int, tokens: int, cost_usd: float) -> None: ...

    @abc.abstractmethod
    def run_usage(self, run_id: int) -> RunUsage: ...

    # candidates
    @abc.abstractmethod
    def create_candidate(
        self, run_id: int, spec: dict[str, Any], spec_hash: str, *, level: str, optimizer: str,
        parents: tuple[int, ...] = (), trial_number: int | None = None,
    ) -> CandidateRecord: ...

    @abc.abstractmethod
    def set_candidate_status(self, candidate_id: int, status: str, *, note: str | None = None) -> None: ...

    @abc.abstractmethod
    def get_candidate(self, candidate_id: int) -> CandidateRecord | None: ...

    @abc.abstractmethod
    def list_candidates(self, run_id: int) -> list[CandidateRecord]: ...

    @abc.abstractmethod
    def best_candidates(self, run_id: int, limit: int) -> list[CandidateRecord]:
        """At most ``limit`` candidates, best complete dev score first (ties by number), then those without one.

        A query, not a scan: a long run holds thousands of candidates and a table shows a few."""

    # evaluations
    @abc.abstractmethod
    def get_or_create_evaluation(self, candidate_id: int, split: str) -> EvaluationRecord: ...

    @abc.abstractmethod
    def list_evaluations(self, *, run_id: int | None = None, candidate_id: int | None = None) -> list[EvaluationRecord]: ...

    @abc.abstractmethod
    def add_example_results(self, evaluation_id: int, outcomes: Sequence[ExampleOutcome]) -> None:
        """Store the outcomes all at once (one transaction): a run hands over those that finished together."""

    @abc.abstractmethod
    def list_example_results(self, evaluation_id: int) -> list[ExampleResultRecord]: ...

    @abc.abstractmethod
    def complete_evaluation(self, evaluation_id: int, wall_s: float, *, pruned_because: str | None = None) -> EvaluationRecord:
        """Aggregate the stored example results and close the evaluation, as ``pruned`` when a reason is given."""
