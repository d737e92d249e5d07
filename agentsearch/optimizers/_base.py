"""The optimizer contract, in Optuna's ask/tell shape, and the read-only view of a run optimizers learn from."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentsearch.search_space import AnySpec

if TYPE_CHECKING:
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import AgentLimits
    from agentsearch.lm import Usage
    from agentsearch.search_space import SearchSpace
    from agentsearch.store import CandidateRecord, EvaluationRecord
    from agentsearch.task import Task


@dataclass(frozen=True)
class Proposal:
    spec: AnySpec
    parents: tuple[int, ...]
    """Candidate ids this one was derived from."""
    trial_number: int | None = None
    """The optimizer's own handle for the proposal, stored with the candidate so a restart can tell it."""
    origin: str | None = None
    """What the candidate's ``optimizer`` field records when it is not the optimizer's name
    (``archive`` for a hand-written design, ``repair`` for a fixed one)."""
    counts: bool = True
    """Whether the candidate counts against ``max_candidates`` (a design's repair does not)."""
    repairs: int = 0
    """Repairs in the chain that led to it (0: not a repair)."""


@dataclass(frozen=True)
class Outcome:
    """What became of a proposal; ``tell`` gets one for every ``ask``, whatever happened."""

    candidate_id: int | None
    """The candidate evaluated, or the known one a duplicate repeats (None when none was created)."""
    score: float | None
    """Dev score (partial when pruned); None when the candidate failed or was not evaluated."""
    cost: float | None = None
    """Cost per example, for a cost-aware optimizer."""
    pruned: bool = False
    duplicate: bool = False
    """The proposal repeats a known candidate: ``score`` is that one's (None if it has none yet)."""
    error: str | None = None
    """Why the candidate failed: a design's smoke test error, or that the quota was reached first."""


class BaseOptimizer(abc.ABC):
    """Proposes candidate specs and learns from their dev scores.

    ``tell`` is called once for each proposal ``ask`` returned, with its ``Outcome``: scored,
    pruned (with the partial score), failed (with the error), a duplicate of a known candidate, or
    dropped. A proposal asked before a crash, or by a worker that died, is told later by another
    instance, possibly in another process, through ``Proposal.trial_number``: an optimizer's state
    must live in storage or be rebuilt from the run's view, never only in memory. Instances are used
    from one thread.

    Pruning is optional: ``report`` receives per-example dev scores keyed by the example's position
    in dev as they arrive, and ``should_prune`` is asked between minibatches.
    """

    name: str
    prunes: bool = False
    prune_reason: str = "stopped early"
    """Why ``should_prune`` stops a candidate, in words, for the evaluation's note."""

    @abc.abstractmethod
    def ask(self) -> Proposal: ...

    @abc.abstractmethod
    def tell(self, proposal: Proposal, outcome: Outcome) -> None: ...

    @property
    def owes_proposal(self) -> bool:
        """Whether the next ``ask`` is one the quota does not count (a failed design's repair), owed
        even when the quota is reached."""
        return False

    def finished(self) -> str | None:
        """Why the optimizer's search is over before its quota (it converged), or None; asked before each
        ``ask``, it ends the stage for this worker (what is pending is still finished)."""
        return None

    def report(self, proposal: Proposal, scores: dict[int, float]) -> None:
        """Per-example dev scores of a proposal being evaluated."""

    def should_prune(self, proposal: Proposal) -> bool:
        return False

    def minibatch_offset(self, proposal: Proposal) -> int:
        """Where in dev (modulo its size) the proposal's minibatches start: 0 scores every candidate's
        first minibatch on the same examples, which a paired test across candidates needs."""
        return 0


class RunView(abc.ABC):
    """What an optimizer may know of the run it proposes for: read-only, plus ``charge`` for its own
    LM calls. Finished evaluations never change, so the view keeps what it has read and asks the
    store only for what is new (other workers' candidates, evaluations that ended)."""

    task: Task
    space: SearchSpace | None
    seed_candidate_id: int
    worker: int
    """This worker's ordinal in the run (0 for the first, and for a single process)."""
    storage_url: str
    run_name: str
    train: list[LabelledExample]
    limits: AgentLimits
    """A design's sandbox limits (the meta agent tells the proposer about them)."""

    @abc.abstractmethod
    def candidates(self, *, levels: tuple[str, ...] | None = None) -> list[CandidateRecord]:
        """The run's candidates (of ``levels``), by number, as of now."""

    @abc.abstractmethod
    def dev_scores(self, candidate_id: int) -> dict[int, float] | None:
        """Per-example scores of the candidate's complete dev evaluation, by dev position; None if it has none."""

    @abc.abstractmethod
    def dev_evaluation(self, candidate_id: int) -> EvaluationRecord | None:
        """The candidate's finished (complete or pruned) dev evaluation, or None."""

    def dev_score(self, candidate_id: int) -> float | None:
        evaluation = self.dev_evaluation(candidate_id)
        return None if evaluation is None or evaluation.status != "complete" else evaluation.score

    @abc.abstractmethod
    def wrong_answers(self, candidate_id: int) -> list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any],
                                                              str | None]]:
        """Dev examples the candidate got wrong: (inputs, prediction, gold, error), in dev order."""

    @abc.abstractmethod
    def program_calls(self, candidate_id: int) -> float:
        """LM calls the candidate's program made per dev example."""

    @abc.abstractmethod
    def charge(self, usage: Usage) -> None:
        """Book the optimizer's own LM calls to the run (the budget sees them)."""

    @abc.abstractmethod
    def proposer(self) -> dspy.BaseLM:
        """The proposer LM, behind the run's budget and stop signal."""

    @abc.abstractmethod
    def mark_trial(self, candidate_id: int, trial_number: int) -> None:
        """Record in the store that Optuna trial ``trial_number`` stands for the candidate."""

    @abc.abstractmethod
    def notes(self, source: str, last: int) -> list[str]:
        """The last ``last`` notes ``source`` kept in the run (any worker's, any process's), oldest first."""

    @abc.abstractmethod
    def keep_note(self, source: str, text: str) -> None:
        """Keep a note in the run for every later ``notes`` read, in this process or another."""

    @abc.abstractmethod
    def once(self, name: str) -> bool:
        """True for the one worker that should do the one-time step ``name`` now (others get False)."""

    @abc.abstractmethod
    def wait_for(self, condition: Any, what: str) -> None:
        """Return once ``condition()`` holds (polling the store), or raise if the run stops meanwhile."""
