"""``program``: your own DSPy program (``program.module``), its named predictors the nodes.

Your ``forward`` wires them; a candidate sets each predictor's instructions and demos on a deep
copy of your module (``search_space/_user.py``). The space asks, per predictor, which of its
instruction variants, and once for the whole program how many demos from which demo set: a demo
set is a list of train examples on which the program's own trace succeeded, and every predictor
takes its demos from those same traces (as DSPy's BootstrapFewShot does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from agentsearch.search_space.topologies._base import Topology


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
        return True  # the user's modules stay as written: only their prompts vary

    def task_nodes(self, spec: Any) -> list[int]:
        return list(range(len(spec.predictors)))  # every predictor answers part of the task

    @staticmethod
    def demo_choices(space: Any) -> int:
        return 1 + space.max_demos * len(space.demo_sets) if "prompt" in space.levels and space.demo_sets else 1

    def suggest(self, space: Any, trial: Any) -> Any:
        from agentsearch.search_space._spec import CandidateSpec, PredictorSpec

        shape = space.program
        example_ids: tuple[str, ...] = ()
        if self.demo_choices(space) > 1 and space.max_demos:
            count = trial.suggest_int("program.n_demos", 0, space.max_demos)
            if count:
                example_ids = space.demo_sets[space.choose(trial, "program.demo_set", tuple(range(len(space.demo_sets))))][:count]
        nodes = []
        for node in shape["nodes"]:
            name, variants = node["name"], tuple(node["instructions"])
            instructions = variants[0]
            if "prompt" in space.levels:
                instructions = variants[space.choose(trial, f"{name}.instruction", tuple(range(len(variants))))]
            nodes.append(PredictorSpec(
                name=name, signature=node["signature"], instructions=instructions,
                demo_ids=tuple(f"{name}:{e}" for e in example_ids if f"{name}:{e}" in space.demos),
                format=space.choose(trial, f"{name}.format", space.formats)))
        return CandidateSpec(topology=self.name, program=shape["reference"], predictors=tuple(nodes))

    def size(self, space: Any, node: int, wiring: int) -> int:
        per_node = [len(n["instructions"]) if "prompt" in space.levels else 1 for n in space.program["nodes"]]
        return self.demo_choices(space) * math.prod(count * len(space.formats) for count in per_node)
