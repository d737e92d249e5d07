"""Specs compiled into runnable DSPy modules, and programs saved as self-contained JSON.

A saved program carries its spec, the demo texts it uses and the LM settings, so loading it needs
neither the user's source code (``dspy.load`` needs the class) nor the training data, and never
unpickles anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dspy
from pydantic import ValidationError

from agentsearch.evaluators import AgentLimits
from agentsearch.exceptions import ProgramFileError, describe_validation_error
from agentsearch.search_space._design import DesignProgram
from agentsearch.search_space._nodes import Node
from agentsearch.search_space._spec import (
    AnySpec,
    CandidateSpec,
    DesignSpec,
    parse_spec,
)
from agentsearch.search_space.topologies import topology
from agentsearch.search_space.topologies._base import role as topology_role

PROGRAM_FILE_VERSION = 1

Demos = Mapping[str, Mapping[str, Any]]


def node_signature(task_signature: str, role: str) -> str:
    """The signature of a node playing ``role`` in a topology, derived from the task's signature."""
    inputs, outputs = (part.strip() for part in task_signature.split("->", 1))
    played = topology_role(role)
    return f"{', '.join([inputs, *played.reads])} -> {played.writes or outputs}"


class SpecProgram(dspy.Module):
    """The DSPy program a CandidateSpec describes: its nodes, wired by its topology."""

    def __init__(self, spec: CandidateSpec, demos: Demos, lm: dspy.BaseLM | None = None, *,
                 base_dir: Path | None = None, pin_lm: bool = True) -> None:
        super().__init__()
        missing = spec.demo_ids() - set(demos)
        if missing:
            raise KeyError(f"demos not found: {sorted(missing)[:3]}")
        self.spec = spec
        self.demo_texts = {demo_id: dict(demos[demo_id]) for demo_id in sorted(spec.demo_ids())}
        self.lm = lm
        self.pin_lm = pin_lm
        """False: ``lm`` is a default, used only when no LM is configured (``dspy.configure``/``dspy.context``)."""
        self.nodes = [Node(predictor, demos, base_dir=base_dir) for predictor in spec.predictors]
        self.outputs = self.nodes[-1].outputs

    def forward(self, **inputs: Any) -> dspy.Prediction:
        with dspy.context(**lm_override(self.lm, self.pin_lm)):
            return topology(self.spec.topology).run(self, dict(inputs))


Program = SpecProgram | DesignProgram


def lm_override(lm: dspy.BaseLM | None, pinned: bool) -> dict[str, Any]:
    """The ``dspy.context`` a program runs under: its own LM when pinned, or when the caller configured none."""
    return {"lm": lm} if lm is not None and (pinned or dspy.settings.lm is None) else {}


def build_program(spec: AnySpec, demos: Demos, lm: dspy.BaseLM | None = None, *, base_dir: Path | None = None,
                  limits: AgentLimits = AgentLimits(), pin_lm: bool = True, repeats: int = 1) -> Program:
    """The runnable program of a spec of any level; ``limits`` bound an agent design's sandbox, ``repeats``
    are the rounds the evaluator runs an example on when the design's LM calls sample.
    ``pin_lm``: ``lm`` is used even inside a ``dspy.context(lm=...)`` (a search's programs must use the run's)."""
    if isinstance(spec, DesignSpec):
        return DesignProgram(spec, lm, limits=limits, pin_lm=pin_lm, repeats=repeats)
    built = topology(spec.topology).build(spec, demos, lm, base_dir=base_dir, pin_lm=pin_lm)
    return built if built is not None else SpecProgram(spec, demos, lm, base_dir=base_dir, pin_lm=pin_lm)


def _program_document(program: Program, *, lm: dict[str, Any] | None, metadata: dict[str, Any]) -> dict[str, Any]:
    document = {
        "agentsearch_program": PROGRAM_FILE_VERSION,
        "spec": program.spec.model_dump(mode="json"),
        "demos": getattr(program, "demo_texts", {}),
        "lm": lm,
        "metadata": metadata,
    }
    if getattr(program, "student_state", None) is not None:  # a compiled student's state: its class is built with it
        document["student_state"] = program.student_state  # type: ignore[union-attr]
    return document


def save_program(program: Program, path: str | Path, *, lm: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    document = _program_document(program, lm=lm, metadata=metadata or {})
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _validated(path: Path, key: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ValidationError as exc:
        raise ProgramFileError(f"{path}: {describe_validation_error(exc, prefix=(key,))}") from None


def load_program(path: str | Path, *, lm: dspy.BaseLM | None = None, base_dir: str | Path | None = None,
                 pin_lm: bool = False, repeats: int = 1) -> Program:
    """Rebuild a saved program. Its LM: ``lm`` if given; else the LM configured where it runs
    (``dspy.configure``, ``dspy.context(lm=...)``); else the file's. ``pin_lm=True`` makes the file's
    LM win over a configured one. ``repeats``: as ``build_program`` (rounds an evaluator runs a design
    whose calls sample; re-scoring uses the task's ``search.agent.repeats``).

    Only ReAct tools and best-of-n rewards are user code, imported by reference from ``base_dir``
    (or the import path); the rest of the program is in the file. An agent design's code is in
    the file too, and runs only in the sandbox.
    """
    from agentsearch.lm import build_lm
    from agentsearch.task import LMConfig

    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProgramFileError(f"{path}: cannot read program file ({exc})") from None
    if not isinstance(document, dict) or document.get("agentsearch_program") != PROGRAM_FILE_VERSION:
        raise ProgramFileError(f"{path}: agentsearch_program: not an agentsearch program file (version {PROGRAM_FILE_VERSION})")
    spec = _validated(path, "spec", parse_spec, document.get("spec"))
    lm_config = _validated(path, "lm", LMConfig.model_validate, document["lm"]) if document.get("lm") else None
    demos = document.get("demos") or {}
    if isinstance(document.get("student_state"), dict):
        from agentsearch.search_space._user import keep_program_state

        keep_program_state(document["student_state"])  # the program's reference names it by its digest
    missing = spec.demo_ids() - set(demos)
    if missing:
        raise ProgramFileError(f"{path}: demos: missing demo {sorted(missing)[0]!r}")
    pinned = lm is not None or pin_lm
    if lm is None and lm_config is not None:
        lm = build_lm(lm_config)
    return build_program(spec, demos, lm, base_dir=None if base_dir is None else Path(base_dir), pin_lm=pinned,
                         repeats=repeats)
