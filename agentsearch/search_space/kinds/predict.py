"""``predict``: one DSPy Predict call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind


class Predict(NodeKind):
    name = "predict"
    order = 0
    wraps_predictors = True

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        import dspy

        return dspy.Predict(signature)
