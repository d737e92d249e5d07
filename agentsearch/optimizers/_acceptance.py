"""Minibatch acceptance: a child is scored on a minibatch of dev first and goes on to the rest of dev
only if it beats its best parent on those same examples, whose scores are already in the store.

Shared by the optimizers that derive children from scored parents (evolve, recombine); a rejected
child is recorded as pruned, with the reason, like any pruned candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from agentsearch.optimizers._base import BaseOptimizer, Proposal


class Scored(Protocol):
    @property
    def candidate_id(self) -> int: ...

    @property
    def scores(self) -> dict[int, float]: ...


class MinibatchAcceptance(BaseOptimizer):
    """Subclasses set ``population`` (the candidates fully scored on dev, read from the run) and
    ``minibatch``; ``_scored`` is the population as last read, keyed by candidate id (finished
    evaluations never change, so it stays true; a parent it lacks is read again)."""

    prunes = True
    prune_reason = "not above its parent's on the same examples (minibatch acceptance)"
    population: Callable[[], Sequence[Scored]]
    minibatch: int
    reported: dict[str, dict[int, float]]
    _scored: dict[int, Scored]

    def report(self, proposal: Proposal, scores: dict[int, float]) -> None:
        self.reported[proposal.spec.hash] = dict(scores)

    def should_prune(self, proposal: Proposal) -> bool:
        """After the first minibatch only: stop unless the child beats its (best) parent on those examples."""
        scores = self.reported.get(proposal.spec.hash, {})
        if not scores or len(scores) > self.minibatch:
            return False
        if not set(proposal.parents) <= set(self._scored):  # a candidate a resumed run finishes
            self._scored = {c.candidate_id: c for c in self.population()}
        parents = [self._scored[cid] for cid in proposal.parents if cid in self._scored]
        if not parents or any(step not in parent.scores for parent in parents for step in scores):
            return False
        parent_best = max(sum(parent.scores[step] for step in scores) for parent in parents)
        return sum(scores.values()) <= parent_best

    def minibatch_offset(self, proposal: Proposal) -> int:
        """A slice of dev that depends on the child alone, so a resumed run scores the same examples first."""
        return int(proposal.spec.hash[:8], 16)
