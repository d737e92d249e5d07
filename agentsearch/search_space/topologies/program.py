"""``program``: your own DSPy program (``program.module``), its named predictors the nodes.

Your ``forward`` wires them; a candidate sets each predictor's instructions, demos, prompt format
and reasoning kind on a deep copy of your module (``search_space/_user.py``). The space asks, per
predictor, its kind (module level: the kinds that can stand in for a predictor and fit its
signature) with that kind's options, which of its instruction variants, and its format; and once
for the whole program how many demos from which demo set: a demo set is a list of train examples
on which the program's own trace succeeded, and every predictor takes its demos from those same
traces (as DSPy's BootstrapFewShot does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentsearch.search_space.topologies._base import Topology


def program_role(program: Mapping[str, Any], signature: str, name: str) -> str:
    """What predictor ``name`` does in your program, in a sentence for the LM that writes its
    instructions: an extraction step's instructions should not be a classifier's."""
    steps = "; ".join(f"{node['name']} ({node['signature']})" for node in program["nodes"])
    return (f"This model is one step, {name!r}, of a program that maps {signature}; the program's steps, "
            f"in the order its predictors are declared: {steps}.")


class UserProgramTopology(Topology):
    name = "program"
    order = 10
    default = False
    options = ("program",)

    def check(self, spec: Any) -> None:
        if spec.program is None:
            raise ValueError("a program spec names its program (a 'package.module:function' reference)")
        names = [node.name for node in spec.predictors]
        if len(set(names)) != len(names):
            raise ValueError("a program spec sets each predictor once")

    def build(self, spec: Any, demos: Any, lm: Any, *, base_dir: Path | None, pin_lm: bool) -> Any:
        from agentsearch.search_space._user import UserProgram

        return UserProgram(spec, demos, lm, base_dir=base_dir, pin_lm=pin_lm)

    def prompt_level(self, spec: Any) -> bool:
        return all(node.module == "predict" for node in spec.predictors)  # every predictor as written

    def task_nodes(self, spec: Any) -> list[int]:
        return list(range(len(spec.predictors)))  # every predictor answers part of the task

    @staticmethod
    def demo_choices(space: Any) -> int:
        return 1 + space.max_demos * len(space.demo_sets) if "prompt" in space.levels and space.demo_sets else 1

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec, PredictorSpec
        from agentsearch.search_space.kinds import node_kind

        shape = space.program
        example_ids: tuple[str, ...] = ()
        if self.demo_choices(space) > 1 and space.max_demos:
            count = trial.suggest_int("program.n_demos", 0, space.max_demos)
            if count:
                example_ids = space.demo_sets[space.choose(trial, "program.demo_set", tuple(range(len(space.demo_sets))))][:count]
        nodes = []
        for node in shape["nodes"]:
            name, variants = node["name"], tuple(node["instructions"])
            kind = space.choose(trial, f"{name}.module", space.kinds_for(node["signature"]))
            options = node_kind(kind).suggest(space, trial, name)
            instructions = variants[0]
            if "prompt" in space.levels:
                instructions = variants[space.choose(trial, f"{name}.instruction", tuple(range(len(variants))))]
            nodes.append(PredictorSpec(
                name=name, signature=node["signature"], instructions=instructions, module=kind,
                demo_ids=space.node_demos(name, example_ids),
                format=space.choose(trial, f"{name}.format", space.formats), **options))
        return CandidateSpec(topology=self.name, program=shape["reference"], predictors=tuple(nodes))

    def size(self, space: Any, node: int, wiring: int) -> int:
        from agentsearch.search_space.kinds import node_kind

        per_node = [(len(n["instructions"]) if "prompt" in space.levels else 1) * len(space.formats)
                    * sum(node_kind(kind).configurations(space) for kind in space.kinds_for(n["signature"]))
                    for n in space.program["nodes"]]
        return self.demo_choices(space) * math.prod(per_node)
