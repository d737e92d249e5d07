"""``self_consistency``: ChainOfThought sampled ``samples`` times, the majority answer returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind, Params


class SelfConsistency(NodeKind):
    name = "self_consistency"
    order = 2
    wraps_predictors = True
    options = ("samples",)
    lift_rank = 2

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        from agentsearch.search_space._nodes import SelfConsistency as Module

        return Module(signature, spec.samples)

    def suggest(self, space: Any, trial: Any, node: str) -> Params:
        return {"samples": trial.suggest_int(f"{node}.samples", 2, space.modules.max_samples)}

    def configurations(self, space: Any) -> int:
        return space.modules.max_samples - 1

    def lift(self, space: Any, prompt: Params) -> Params:
        return {"samples": space.modules.max_samples}
