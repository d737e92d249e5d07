"""``reflect``: an answer, then up to ``rounds`` of critique and revision, stopping when a revision
no longer changes the answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentsearch.search_space.topologies._base import (
    Params,
    Role,
    Topology,
    node_params,
    wiring_params,
)


class Reflect(Topology):
    name = "reflect"
    order = 4
    roles = {
        "answer": Role(),
        "critique": Role(reads=("proposed_answer",), writes="critique",
                         instructions="Check the proposed answer for this input and say what, if anything, is "
                                      "wrong with it."),
        "revise": Role(reads=("previous_answer", "critique"),
                       instructions="Give the corrected answer for this input, using the critique of the previous "
                                    "answer."),
    }
    options = ("rounds",)
    lift_rank = 6

    def check(self, spec: Any) -> None:
        if len(spec.predictors) != 3:
            raise ValueError("a reflect loop has three nodes: answer, critique, revise")

    def run(self, program: Any, inputs: dict[str, Any]) -> Any:
        from agentsearch.search_space._nodes import render_answer

        answer, critique, revise = program.nodes
        prediction = answer(**inputs)
        for _ in range(program.spec.rounds):
            previous = render_answer(prediction, program.outputs)
            feedback = critique(**inputs, proposed_answer=previous).critique
            revised = revise(**inputs, previous_answer=previous, critique=feedback)
            if render_answer(revised, program.outputs) == previous:
                break  # a fixed point: more rounds would repeat it
            prediction = revised
        return prediction

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec

        rounds = trial.suggest_int("reflect.rounds", 1, space.modules.max_rounds)
        return CandidateSpec(topology=self.name, rounds=rounds, predictors=(
            space.task_node(trial, "answer"), space.wiring_node(trial, "critique"),
            space.wiring_node(trial, "revise")))

    def shape_params(self, spec: Any) -> Params:
        return {"reflect.rounds": spec.rounds}

    def size(self, space: Any, node: int, wiring: int) -> int:
        return space.modules.max_rounds * node * wiring * wiring

    def lift(self, space: Any, prompts: Sequence[Params]) -> Params:
        return {"topology": self.name, "reflect.rounds": 1, **node_params(prompts[0], "answer", "predict"),
                **wiring_params("critique", prompts[0]), **wiring_params("revise", prompts[0])}
