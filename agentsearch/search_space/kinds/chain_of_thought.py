"""``chain_of_thought``: DSPy's ChainOfThought (a reasoning field before the outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind


class ChainOfThought(NodeKind):
    name = "chain_of_thought"
    order = 1
    lift_rank = 1
    wraps_predictors = True

    def fits(self, signature: str) -> bool:
        # a signature that already reasons first (your own ChainOfThought) would get it twice
        import dspy

        return "reasoning" not in dspy.Signature(signature).output_fields

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        import dspy

        return dspy.ChainOfThought(signature)
