"""``react``: DSPy's ReAct over the task's tools (``search.modules.tools``), up to ``max_iters`` steps.
Off unless the task lists tools; no demos (its prompts have fields no task example fills)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind, Params


class ReAct(NodeKind):
    name = "react"
    order = 5
    options = ("tools", "max_iters")
    fixed_demos = False
    default = False
    lift_rank = 9

    def check_config(self, config: Any) -> None:
        if not config.tools:
            raise ValueError("kinds: react needs at least one tool in search.modules.tools")

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        import dspy

        from agentsearch._references import resolve_callable

        tools = [resolve_callable(ref, base_dir=base_dir, what="tool") for ref in spec.tools]
        return dspy.ReAct(signature, tools=tools, max_iters=spec.max_iters)

    def suggest(self, space: Any, trial: Any, node: str) -> Params:
        return {"tools": tuple(space.modules.tools),
                "max_iters": trial.suggest_int(f"{node}.max_iters", 1, space.modules.max_iters)}

    def configurations(self, space: Any) -> int:
        return space.modules.max_iters

    def lift(self, space: Any, prompt: Params) -> Params:
        return {"max_iters": space.modules.max_iters}
