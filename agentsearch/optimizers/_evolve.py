"""Reflective evolution of prompts (GEPA's loop), over the run's search space.

Each ``ask`` picks a parent from the per-example Pareto front of the candidates scored on all of dev
(a candidate is on it when no other scores higher on some example; it is picked in proportion to
how many examples it leads on, so a specialist survives beside the best on average) and mutates one
of its task nodes:

- ``reflect``: the proposer LM is shown the node's instructions and examples the parent got wrong —
  input, prediction, expected answer, and the feedback (the error, or the gold answer missed) — all
  read from the store, and writes new instructions;
- ``format`` and ``demos``: another prompt format, or another demo set or count, from the space
  (a weak LM's failures are often about the format, which no instruction can fix; a switch to the
  few-shot completion format brings a demo set when the node has none).

Every ``merge_every``-th proposal instead merges two front candidates that lead on different
examples: one's instructions with the other's demos and format. A child is first scored on a
minibatch of dev (a different slice each time) and goes on to the rest of dev only if it beats its
parent on those same examples, whose scores are already in the store; otherwise it stops there,
recorded as pruned with the reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dspy

from agentsearch.lm import Usage
from agentsearch.optimizers._acceptance import MinibatchAcceptance, Scored
from agentsearch.optimizers._base import Outcome, Proposal
from agentsearch.optimizers._proposer import (
    MIN_PROPOSAL_TOKENS,
    ask_proposer,
    clean_instruction,
)
from agentsearch.optimizers._templates import render
from agentsearch.search_space import (
    CandidateSpec,
    PredictorSpec,
    SearchSpace,
)
from agentsearch.search_space.kinds import node_kind
from agentsearch.search_space.topologies import topology
from agentsearch.search_space.topologies.program import program_role


@dataclass(frozen=True)
class ScoredCandidate:
    """A candidate of the space fully scored on dev, as evolve and recombine see it."""

    candidate_id: int
    spec: CandidateSpec
    scores: dict[int, float]
    """Per-example dev scores, keyed by the example's position in dev."""
    number: int = 0
    """Its number in the run (0: the seed), as prompts name it."""
    calls: float = 1.0
    """LM calls of its program per dev example."""

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / max(len(self.scores), 1)


@dataclass(frozen=True)
class Failure:
    """A dev example a candidate got wrong, as the proposer is shown it."""

    inputs: dict[str, str]
    prediction: str
    expected: dict[str, str]
    feedback: str
    unparsed: bool = False
    """The program's output could not be parsed (an error, not a wrong answer)."""


def mostly_unparsed(failures: Sequence[Failure]) -> bool:
    """Whether most of a candidate's failures are answers its format could not parse: no instruction
    or kind fixes those, another format may (evolve and recombine then change the node's format)."""
    return sum(f.unparsed for f in failures) * 2 > len(failures)


def pareto_front(population: Sequence[ScoredCandidate]) -> dict[int, int]:
    """Candidate id -> number of examples on which it has the highest score (ties shared)."""
    best: dict[int, float] = {}
    for candidate in population:
        for step, score in candidate.scores.items():
            best[step] = max(best.get(step, score), score)
    leads = {c.candidate_id: sum(1 for s, v in c.scores.items() if v >= best[s]) for c in population}
    return {cid: count for cid, count in leads.items() if count}


class EvolveOptimizer(MinibatchAcceptance):
    """Its state is the store: ``population()`` reads the candidates fully scored on dev, ``failures``
    reads a candidate's wrong answers, ``asked()`` counts the proposals made so far."""

    name = "evolve"

    def __init__(self, space: SearchSpace, proposer: dspy.BaseLM, *,
                 population: Callable[[], list[ScoredCandidate]],
                 failures: Callable[[int, random.Random], list[Failure]],
                 asked: Callable[[], int], spend: Callable[[Usage], None], seed: int, minibatch: int,
                 merge_every: int = 5) -> None:
        self.space = space
        self.proposer = proposer
        self.population: Callable[[], list[ScoredCandidate]] = population
        self.failures = failures
        self.asked = asked
        self.spend = spend
        self.seed = seed
        self.minibatch = minibatch
        self.merge_every = merge_every
        self.reported: dict[str, dict[int, float]] = {}
        self._scored: dict[int, Scored] = {}
        self._last_number: int | None = None
        self._repeats = 0

    # proposals ----------------------------------------------------------------------------------
    def ask(self) -> Proposal:
        number = self.asked()
        # Proposals that repeat a known candidate create none, so ``asked()`` stays; the repeat count
        # moves the random stream on (and restarts from the same point after a resume).
        self._repeats = self._repeats + 1 if number == self._last_number else 0
        self._last_number = number
        rng = random.Random((self.seed * 1_000_003 + number) * 1_009 + self._repeats)
        population = self.population()
        self._scored = {c.candidate_id: c for c in population}
        by_id = {c.candidate_id: c for c in population}
        front = pareto_front(population)
        if number % self.merge_every == self.merge_every - 1 and not self._repeats:  # a repeated merge: mutate
            merged = self._merge(rng, [by_id[cid] for cid in sorted(front)])
            if merged is not None:
                return merged
        ids = sorted(front)
        parent = by_id[rng.choices(ids, weights=[front[cid] for cid in ids])[0]]
        return Proposal(self._mutate(parent, rng, rollout=number * 1_000 + self._repeats), (parent.candidate_id,))

    def _mutate(self, parent: ScoredCandidate, rng: random.Random, *, rollout: int) -> CandidateSpec:
        nodes = topology(parent.spec.topology).task_nodes(parent.spec)
        index = rng.choice(nodes)
        node = parent.spec.predictors[index]
        other_formats = [f for f in self.space.formats if f != node.format]
        takes_demos = bool(self.space.demo_sets and self.space.max_demos and node_kind(node.module).fixed_demos)
        kinds = ["reflect", *(["format"] if other_formats else []), *(["demos"] if takes_demos else [])]
        failures = self.failures(parent.candidate_id, rng)
        if other_formats and mostly_unparsed(failures):
            kind = "format"
        else:
            kind = rng.choice(kinds)
        if kind == "format":
            update: dict = {"format": rng.choice(other_formats)}
            if update["format"] == "completion" and takes_demos and not node.demo_ids:
                # the completion format is few-shot text: without demos it gives the LM nothing to continue
                update["demo_ids"] = self.space.node_demos(node.name, rng.choice(self.space.demo_sets)[:self.space.max_demos])
            changed = node.model_copy(update=update)
        elif kind == "demos":
            demo_set = rng.choice(self.space.demo_sets)
            count = rng.randint(0, min(self.space.max_demos, len(demo_set)))
            changed = node.model_copy(update={"demo_ids": self.space.node_demos(node.name, demo_set[:count])})
        else:
            changed = node.model_copy(update={"instructions": self._reflect(node, failures, rollout)})
        predictors = list(parent.spec.predictors)
        predictors[index] = PredictorSpec.model_validate(changed.model_dump())
        return parent.spec.model_copy(update={"predictors": tuple(predictors)})

    def _reflect(self, node: PredictorSpec, failures: list[Failure], rollout: int) -> str:
        """New instructions; ``rollout`` makes a repeated request a new sample, not DSPy's cached reply."""
        signature = dspy.Signature(node.signature)
        prompt = render("reflect_instruction.j2", instructions=node.instructions, failures=failures,
                        inputs=list(signature.input_fields), outputs=list(signature.output_fields),
                        role=program_role(self.space.program, self.space.signature, node.name) if self.space.program else None)
        reply, usage = ask_proposer(self.proposer, prompt, rollout=rollout, min_tokens=MIN_PROPOSAL_TOKENS)
        self.spend(usage)
        # a failed proposal keeps the parent's instructions (the format or demos may move next time)
        return clean_instruction(reply or "") or node.instructions

    def _merge(self, rng: random.Random, front: list[ScoredCandidate]) -> Proposal | None:
        """Two front candidates of the same shape that each lead on examples the other does not."""
        pairs = [(a, b) for i, a in enumerate(front) for b in front[i + 1:]
                 if a.spec.structure() == b.spec.structure() and _complementary(a, b)]
        if not pairs:
            return None
        first, second = rng.choice(pairs)
        if second.mean > first.mean:
            first, second = second, first
        predictors = tuple(
            PredictorSpec.model_validate(a.model_copy(update={"demo_ids": b.demo_ids, "format": b.format}).model_dump())
            if a.module == b.module else a
            for a, b in zip(first.spec.predictors, second.spec.predictors)
        )
        child = first.spec.model_copy(update={"predictors": predictors})
        return Proposal(child, (first.candidate_id, second.candidate_id))

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Nothing to keep in memory: the population is read from the run."""


def _complementary(a: ScoredCandidate, b: ScoredCandidate) -> bool:
    common = set(a.scores) & set(b.scores)
    return any(a.scores[s] > b.scores[s] for s in common) and any(b.scores[s] > a.scores[s] for s in common)
