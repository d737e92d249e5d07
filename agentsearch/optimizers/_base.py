"""The optimizer contract, in Optuna's ask/tell shape."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from agentsearch.search_space import CandidateSpec


@dataclass(frozen=True)
class Proposal:
    spec: CandidateSpec
    parents: tuple[int, ...]
    """Candidate ids this one was derived from."""
    trial_number: int | None = None
    """The optimizer's own handle for the proposal, stored with the candidate so a restart can tell it."""


class BaseOptimizer(abc.ABC):
    """Proposes candidate specs and learns from their dev scores.

    ``tell`` is called once for each proposal ``ask`` returned, with its dev score, or None when the
    candidate failed. An optimizer's state must live in storage, not in memory: a proposal asked
    before a crash is told after the restart, by a new instance, through ``Proposal.trial_number``.
    """

    name: str

    @abc.abstractmethod
    def ask(self) -> Proposal: ...

    @abc.abstractmethod
    def tell(self, proposal: Proposal, score: float | None) -> None: ...
