"""``single``: one node over the task signature (the seed program, and every prompt-level candidate)."""

from __future__ import annotations

from typing import Any

from agentsearch.search_space.topologies._base import Role, Topology


class Single(Topology):
    name = "single"
    order = 0
    roles = {"answer": Role()}

    def check(self, spec: Any) -> None:
        if len(spec.predictors) != 1:
            raise ValueError(f"a single-node program has one node, not {len(spec.predictors)}")

    def prompt_level(self, spec: Any) -> bool:
        return bool(spec.modules() == {"predict"})

    def run(self, program: Any, inputs: dict[str, Any]) -> Any:
        return program.nodes[0](**inputs)

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec

        return CandidateSpec(predictors=(space.task_node(trial, "answer"),))

    def size(self, space: Any, node: int, wiring: int) -> int:
        return node
