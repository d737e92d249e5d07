"""The optimizer contract, in Optuna's ask/tell shape."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from agentsearch.search_space import AnySpec


@dataclass(frozen=True)
class Proposal:
    spec: AnySpec
    parents: tuple[int, ...]
    """Candidate ids this one was derived from."""
    trial_number: int | None = None
    """The optimizer's own handle for the proposal, stored with the candidate so a restart can tell it."""


class BaseOptimizer(abc.ABC):
    """Proposes candidate specs and learns from their dev scores.

    ``tell`` is called once for each proposal ``ask`` returned: with its dev score (and its cost per
    example, for a cost-aware optimizer), with None when the candidate failed, or with
    ``pruned=True`` and the partial score when ``should_prune`` stopped it. An optimizer's state must
    live in storage, not in memory: a proposal asked before a crash is told after the restart, by a
    new instance, through ``Proposal.trial_number``.

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
    def tell(self, proposal: Proposal, score: float | None, *, cost: float | None = None,
             pruned: bool = False) -> None: ...

    def report(self, proposal: Proposal, scores: dict[int, float]) -> None:
        """Per-example dev scores of a proposal being evaluated."""

    def should_prune(self, proposal: Proposal) -> bool:
        return False

    def minibatch_offset(self, proposal: Proposal) -> int:
        """Where in dev (modulo its size) the proposal's minibatches start: 0 scores every candidate's
        first minibatch on the same examples, which a paired test across candidates needs."""
        return 0
