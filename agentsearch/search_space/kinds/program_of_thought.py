"""``program_of_thought``: the LM writes a Python program for the input; it runs in the sandbox and
the LM answers from its output. No demos: its prompts have fields no task example fills."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind


class ProgramOfThought(NodeKind):
    name = "program_of_thought"
    order = 4
    fixed_demos = False
    lift_rank = 8

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        from agentsearch.search_space._nodes import ProgramOfThought as Module

        return Module(signature)
