"""``pipeline``: an analysis node lists the facts that decide the answer, then a task node responds
reading them. Each node reads the task inputs and every earlier node's outputs."""

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


class Pipeline(Topology):
    name = "pipeline"
    order = 1
    roles = {
        "analyze": Role(writes="analysis", instructions="List the facts in the input that decide the answer, briefly."),
        "respond": Role(reads=("analysis",)),
    }
    lift_rank = 5

    def check(self, spec: Any) -> None:
        if len(spec.predictors) < 2:
            raise ValueError("a pipeline has at least two nodes")

    def run(self, program: Any, inputs: dict[str, Any]) -> Any:
        values, prediction = dict(inputs), None
        for node in program.nodes:
            prediction = node(**values)
            values.update(prediction.items())
        return prediction

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec

        return CandidateSpec(topology=self.name, predictors=(space.wiring_node(trial, "analyze"),
                                                             space.task_node(trial, "respond")))

    def size(self, space: Any, node: int, wiring: int) -> int:
        return wiring * node

    def lift(self, space: Any, prompts: Sequence[Params]) -> Params:
        return {"topology": self.name, **wiring_params("analyze", prompts[0]),
                **node_params(prompts[0], "respond", "predict")}
