"""Programs exported for use without agentsearch.

An agent design gets a standalone Python file beside its JSON program file: the JSON file is what
``agentsearch.load_program`` reads (the design then runs in the sandbox again); the Python file is
for reading the design and running it anywhere with litellm alone. A single Predict or
ChainOfThought node can also be written as DSPy's own state file, which a fresh
``dspy.Predict(signature)`` (or ``dspy.ChainOfThought``) loads with plain DSPy, and so can your own
program (``program.module``), which a fresh instance of it loads; other programs have no
plain-DSPy module to load into, so they are refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dspy

from agentsearch.optimizers._templates import render
from agentsearch.search_space import CandidateSpec, DesignSpec


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


DSPY_MODULES = {"predict": "dspy.Predict", "chain_of_thought": "dspy.ChainOfThought"}
DSPY_ADAPTERS = {"chat": None, "json": "agentsearch.search_space.JSONModeAdapter()", "xml": "dspy.XMLAdapter()"}
"""Formats plain DSPy has an adapter for (None: its default, ChatAdapter). The json format is DSPy's
JSONAdapter asking for JSON mode wherever the provider takes it, as it was scored (plain
``dspy.JSONAdapter()`` asks only where the LM object declares it)."""


def write_dspy_state(program: Any, path: str | Path) -> str:
    """Write a single-node program as DSPy's state file; returns the plain-DSPy lines that load it.

    Raises ExportError when plain DSPy has no module for the program (a topology, a kind of ours,
    our completion format)."""
    from agentsearch.exceptions import ExportError
    from agentsearch.search_space import SearchedPredictor, SpecProgram
    from agentsearch.search_space._user import UserProgram

    if isinstance(program, UserProgram):  # your own program: its state, loaded into a fresh instance of it
        program.program.save(str(path))
        searched = any(isinstance(p, SearchedPredictor) for _, p in program.program.named_predictors())
        return _loader(program.spec.program, path, searched)
    if not isinstance(program, SpecProgram):
        raise ExportError("an agent design is Python code run in a sandbox: plain DSPy has no module to load it "
                          "into; use the .py file or agentsearch.load_program")
    spec = program.spec
    node = spec.predictors[0]
    if spec.topology != "single":
        raise ExportError(f"a {spec.structure()} program wires several nodes: plain DSPy has no module to load it "
                          "into; use agentsearch.load_program")
    if node.module not in DSPY_MODULES:
        raise ExportError(f"module {node.module} is agentsearch's own node: plain DSPy has no module to load it into; "
                          "use agentsearch.load_program")
    if node.format not in DSPY_ADAPTERS:
        raise ExportError(f"format {node.format} is agentsearch's own adapter (CompletionAdapter): plain DSPy would "
                          "prompt differently; use agentsearch.load_program")
    program.nodes[0].module.save(str(path))
    lines = [f'program = {DSPY_MODULES[node.module]}("{node.signature}")', f'program.load("{Path(path).name}")']
    if DSPY_ADAPTERS[node.format]:
        if node.format == "json":
            lines.insert(0, "import agentsearch.search_space")
        lines.append(f"dspy.configure(adapter={DSPY_ADAPTERS[node.format]})  # the format it was scored with")
    return "\n".join(lines)


def write_student_state(student_state: dict[str, Any], reference: str, spec: CandidateSpec,
                        demos: dict[str, Any], path: str | Path) -> str:
    """Write your program's optimized DSPy state from the state the run kept of it (no need to import
    or build your class); returns the lines that load it into a fresh instance."""
    from dspy.utils.saving import get_dependency_versions

    from agentsearch.search_space._user import AS_WRITTEN, candidate_state

    state = candidate_state(student_state, spec, demos)
    state["metadata"] = {"dependency_versions": get_dependency_versions()}
    Path(path).write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    searched = any({"module": node.module, "format": node.format} != AS_WRITTEN for node in spec.predictors)
    return _loader(reference, path, searched)


def _loader(reference: str, path: str | Path, searched: bool) -> str:
    """The lines that load a saved state into a fresh instance of your program."""
    from agentsearch._references import IN_PROCESS
    from agentsearch.search_space._user import STATE_MARK

    module, _, function = reference.split(STATE_MARK)[0].rpartition(":")
    imported = function.split(".")[0]  # a nested class: its outer class is what imports
    name = Path(path).name
    if searched:
        lines = ["import agentsearch", f'program = agentsearch.load_into({function}(), "{name}")  # its predictors\' '
                                       "kinds and formats too"]
    else:
        lines = [f"program = {function}()", f'program.load("{name}")']
    if module.startswith(IN_PROCESS):  # a class defined where it was compiled (a notebook): the user has it there
        lines[-1] += f"  # {function}: your class, as you compiled it"
        return "\n".join(lines)
    return "\n".join([f"from {module} import {imported}", *lines])


def lm_options(lm: dict[str, Any]) -> dict[str, Any]:
    """The call settings of a task's ``lm`` block that litellm takes as they are."""
    return {key: lm[key] for key in ("temperature", "max_tokens", "api_base") if lm.get(key) is not None}
