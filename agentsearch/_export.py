"""An agent design exported as a standalone Python file, beside its JSON program file.

The JSON file is what ``agentsearch.load_program`` reads (the design then runs in the sandbox
again); the Python file is for reading the design and running it anywhere with litellm alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy

from agentsearch.optimizers._templates import render
from agentsearch.search_space import DesignSpec


def write_standalone_design(spec: DesignSpec, path: str | Path, *, model: str, lm_options: dict[str, Any],
                            metadata: dict[str, Any]) -> Path:
    path = Path(path)

    def score(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    path.write_text(render(
        "standalone_design.py.j2", name=spec.name, rationale=spec.rationale, code=spec.code.rstrip(),
        run=metadata.get("run"), candidate=metadata.get("candidate_id"), dev=score(metadata.get("dev_score")),
        test=score(metadata.get("test_score")), filename=path.name, model=model, lm_options=lm_options,
        inputs=list(dspy.Signature(spec.signature).input_fields),
    ), encoding="utf-8")
    return path


def lm_options(lm: dict[str, Any]) -> dict[str, Any]:
    """The call settings of a task's ``lm`` block that litellm takes as they are."""
    return {key: lm[key] for key in ("temperature", "max_tokens", "api_base") if lm.get(key) is not None}
