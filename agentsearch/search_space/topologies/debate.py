"""``debate``: agents answer, then for ``rounds - 1`` more rounds each answers again having read the
others; a judge node gives the final answer from the transcript."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentsearch.search_space.topologies._base import (
    Params,
    Role,
    Topology,
    numbered_params,
    wiring_params,
)


class Debate(Topology):
    name = "debate"
    order = 3
    roles = {
        "agent": Role(reads=("other_answers",)),
        "judge": Role(reads=("debate",), instructions="Agents debated this input. Give the correct answer."),
    }
    options = ("rounds",)
    lift_rank = 7

    def check(self, spec: Any) -> None:
        if len(spec.predictors) < 3:
            raise ValueError("a debate has at least two agents and a judge")

    def run(self, program: Any, inputs: dict[str, Any]) -> Any:
        from agentsearch.search_space._nodes import numbered_answers

        agents, judge = program.nodes[:-1], program.nodes[-1]
        answers = [agent(**inputs, other_answers="(none yet)") for agent in agents]
        transcript = [f"Round 1:\n{numbered_answers(answers, program.outputs)}"]
        for round_number in range(2, program.spec.rounds + 1):
            answers = [agent(**inputs, other_answers=numbered_answers(answers[:i] + answers[i + 1:], program.outputs))
                       for i, agent in enumerate(agents)]
            transcript.append(f"Round {round_number}:\n{numbered_answers(answers, program.outputs)}")
        return judge(**inputs, debate="\n".join(transcript))

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec

        agents = trial.suggest_int("debate.agents", 2, space.modules.max_members)
        rounds = trial.suggest_int("debate.rounds", 1, space.modules.max_rounds)
        nodes = [space.task_node(trial, f"agent_{i}") for i in range(1, agents + 1)]
        return CandidateSpec(topology=self.name, predictors=(*nodes, space.wiring_node(trial, "judge")),
                             rounds=rounds)

    def shape_params(self, spec: Any) -> Params:
        return {"debate.agents": len(spec.predictors) - 1, "debate.rounds": spec.rounds}

    def size(self, space: Any, node: int, wiring: int) -> int:
        return sum(node**k for k in range(2, space.modules.max_members + 1)) * space.modules.max_rounds * wiring

    def lift_prompts(self, space: Any) -> int:
        return 2

    def lift(self, space: Any, prompts: Sequence[Params]) -> Params:
        return {"topology": self.name, "debate.agents": 2, "debate.rounds": 1, **numbered_params(prompts, "agent"),
                **wiring_params("judge", prompts[0])}
