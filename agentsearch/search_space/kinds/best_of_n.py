"""``best_of_n``: ChainOfThought sampled ``samples`` times, the sample a judge scores highest returned.

The judge is an LM verdict (``lm``) or a ``package.module:function`` reward the task declares;
never the task metric, which needs the gold answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind, Params


class BestOfN(NodeKind):
    name = "best_of_n"
    order = 3
    wraps_predictors = True
    options = ("samples", "judge")
    lift_rank = 4

    def check(self, spec: Any) -> None:
        if not (spec.judge == "lm" or ":" in (spec.judge or "")):
            raise ValueError("a best_of_n node needs a judge: lm or a 'package.module:function' reward")

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        from agentsearch.search_space._nodes import BestOfN as Module

        return Module(signature, spec.samples, spec.judge or "lm", base_dir=base_dir)

    def suggest(self, space: Any, trial: Any, node: str) -> Params:
        samples = trial.suggest_int(f"{node}.samples", 2, space.modules.max_samples)
        return {"samples": samples, "judge": space.choose(trial, f"{node}.judge", space.judges)}

    def configurations(self, space: Any) -> int:
        return (space.modules.max_samples - 1) * len(space.judges)

    def lift(self, space: Any, prompt: Params) -> Params:
        # A task-declared reward, when there is one, knows the task; an LM verdict guesses.
        return {"samples": space.modules.max_samples, "judge": space.judges[-1]}
