"""``ensemble``: members answer independently; ``aggregator`` ``vote`` takes the majority answer,
``lm`` asks a last node to combine them. A member that fails does not sink the others."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from agentsearch.search_space.topologies._base import (
    Params,
    Role,
    Topology,
    numbered_params,
)


class Ensemble(Topology):
    name = "ensemble"
    order = 2
    roles = {
        "member": Role(),
        "aggregate": Role(reads=("candidate_answers",),
                          instructions="Several answers were proposed for this input. Give the correct answer."),
    }
    options = ("aggregator",)
    lift_rank = 0

    def check(self, spec: Any) -> None:
        if len(spec.predictors) - (spec.aggregator == "lm") < 2:
            raise ValueError("an ensemble has at least two members (and an aggregator node when aggregator is lm)")

    def run(self, program: Any, inputs: dict[str, Any]) -> Any:
        from agentsearch.search_space._nodes import (
            majority,
            numbered_answers,
            surviving,
        )

        members = program.nodes[:-1] if program.spec.aggregator == "lm" else program.nodes
        answers = surviving(partial(member, **inputs) for member in members)
        if program.spec.aggregator == "vote":
            return majority(answers, program.outputs)
        return program.nodes[-1](**inputs, candidate_answers=numbered_answers(answers, program.outputs))

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec

        members = trial.suggest_int("ensemble.members", 2, space.modules.max_members)
        aggregator = space.choose(trial, "ensemble.aggregator", ("vote", "lm"))
        nodes = [space.task_node(trial, f"member_{i}") for i in range(1, members + 1)]
        if aggregator == "lm":
            nodes.append(space.wiring_node(trial, "aggregate"))
        return CandidateSpec(topology=self.name, predictors=tuple(nodes), aggregator=aggregator)

    def shape_params(self, spec: Any) -> Params:
        members = sum(node.name.startswith("member_") for node in spec.predictors)
        return {"ensemble.members": members, "ensemble.aggregator": spec.aggregator}

    def size(self, space: Any, node: int, wiring: int) -> int:
        return sum(node**k * (1 + wiring) for k in range(2, space.modules.max_members + 1))

    def lift_prompts(self, space: Any) -> int:
        return int(space.modules.max_members)

    def lift(self, space: Any, prompts: Sequence[Params]) -> Params:
        return {"topology": self.name, "ensemble.members": len(prompts), "ensemble.aggregator": "vote",
                **numbered_params(prompts, "member")}


