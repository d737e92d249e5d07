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
from agentsearch.search_space._nodes import Node, majority, render_answer, surviving
from agentsearch.search_space._spec import (
    AnySpec,
    CandidateSpec,
    DesignSpec,
    parse_spec,
)

PROGRAM_FILE_VERSION = 1

Demos = Mapping[str, Mapping[str, Any]]

ROLE_INSTRUCTIONS = {
    "analyze": "List the facts in the input that decide the answer, briefly.",
    "aggregate": "Several answers were proposed for this input. Give the correct answer.",
    "judge": "Agents debated this input. Give the correct answer.",
    "critique": "Check the proposed answer for this input and say what, if anything, is wrong with it.",
    "revise": "Give the corrected answer for this input, using the critique of the previous answer.",
}
"""Fixed instructions of the nodes that wire a topology (the task's own nodes get searched instructions)."""

_ROLE_FIELDS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "answer": ((), None), "member": ((), None), "analyze": ((), "analysis"), "respond": (("analysis",), None),
    "agent": (("other_answers",), None), "aggregate": (("candidate_answers",), None), "judge": (("debate",), None),
    "critique": (("proposed_answer",), "critique"), "revise": (("previous_answer", "critique"), None),
}
"""Per role: the inputs it reads besides the task's, and its own output (None: the task's outputs)."""


def node_signature(task_signature: str, role: str) -> str:
    """The signature of a node playing ``role`` in a topology, derived from the task's signature."""
    inputs, outputs = (part.strip() for part in task_signature.split("->", 1))
    extra, own_output = _ROLE_FIELDS[role]
    return f"{', '.join([inputs, *extra])} -> {own_output or outputs}"


class SpecProgram(dspy.Module):
    """The DSPy program a CandidateSpec describes: its nodes, wired by its topology."""

    def __init__(self, spec: CandidateSpec, demos: Demos, lm: dspy.BaseLM | None = None, *,
                 base_dir: Path | None = None) -> None:
        super().__init__()
        missing = spec.demo_ids() - set(demos)
        if missing:
            raise KeyError(f"demos not found: {sorted(missing)[:3]}")
        self.spec = spec
        self.demo_texts = {demo_id: dict(demos[demo_id]) for demo_id in sorted(spec.demo_ids())}
        self.lm = lm
        self.nodes = [Node(predictor, demos, base_dir=base_dir) for predictor in spec.predictors]
        self.outputs = self.nodes[-1].outputs

    def forward(self, **inputs: Any) -> dspy.Prediction:
        overrides: dict[str, Any] = {} if self.lm is None else {"lm": self.lm}
        with dspy.context(**overrides):
            return getattr(self, f"_{self.spec.topology}")(dict(inputs))

    def _single(self, inputs: dict[str, Any]) -> dspy.Prediction:
        return self.nodes[0](**inputs)

    def _pipeline(self, values: dict[str, Any]) -> dspy.Prediction:
        prediction = None
        for node in self.nodes:
            prediction = node(**values)
            values.update(prediction.items())
        return prediction

    def _answers(self, predictions: list[dspy.Prediction]) -> str:
        return "\n".join(f"{i}. {render_answer(p, self.outputs)}" for i, p in enumerate(predictions, start=1))

    def _ensemble(self, inputs: dict[str, Any]) -> dspy.Prediction:
        members = self.nodes[:-1] if self.spec.aggregator == "lm" else self.nodes
        answers = surviving(lambda m=member: m(**inputs) for member in members)
        if self.spec.aggregator == "vote":
            return majority(answers, self.outputs)
        return self.nodes[-1](**inputs, candidate_answers=self._answers(answers))

    def _debate(self, inputs: dict[str, Any]) -> dspy.Prediction:
        agents, judge = self.nodes[:-1], self.nodes[-1]
        answers = [agent(**inputs, other_answers="(none yet)") for agent in agents]
        transcript = [f"Round 1:\n{self._answers(answers)}"]
        for round_number in range(2, self.spec.rounds + 1):
            answers = [
                agent(**inputs, other_answers=self._answers(answers[:i] + answers[i + 1:]))
                for i, agent in enumerate(agents)
            ]
            transcript.append(f"Round {round_number}:\n{self._answers(answers)}")
        return judge(**inputs, debate="\n".join(transcript))

    def _reflect(self, inputs: dict[str, Any]) -> dspy.Prediction:
        answer, critique, revise = self.nodes
        prediction = answer(**inputs)
        for _ in range(self.spec.rounds):
            previous = render_answer(prediction, self.outputs)
            feedback = critique(**inputs, proposed_answer=previous).critique
            revised = revise(**inputs, previous_answer=previous, critique=feedback)
            if render_answer(revised, self.outputs) == previous:
                break  # a fixed point: more rounds would repeat it
            prediction = revised
        return prediction


Program = SpecProgram | DesignProgram


def build_program(spec: AnySpec, demos: Demos, lm: dspy.BaseLM | None = None, *, base_dir: Path | None = None,
                  limits: AgentLimits = AgentLimits()) -> Program:
    """The runnable program of a spec of any level; ``limits`` bound an agent design's sandbox."""
    if isinstance(spec, DesignSpec):
        return DesignProgram(spec, lm, limits=limits)
    return SpecProgram(spec, demos, lm, base_dir=base_dir)


def _program_document(program: Program, *, lm: dict[str, Any] | None, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "agentsearch_program": PROGRAM_FILE_VERSION,
        "spec": program.spec.model_dump(mode="json"),
        "demos": getattr(program, "demo_texts", {}),
        "lm": lm,
        "metadata": metadata,
    }


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


def load_program(path: str | Path, *, lm: dspy.BaseLM | None = None, base_dir: str | Path | None = None) -> Program:
    """Rebuild a saved program; its LM comes from the file unless ``lm`` is given.

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
    missing = spec.demo_ids() - set(demos)
    if missing:
        raise ProgramFileError(f"{path}: demos: missing demo {sorted(missing)[0]!r}")
    if lm is None and lm_config is not None:
        lm = build_lm(lm_config)
    return build_program(spec, demos, lm, base_dir=None if base_dir is None else Path(base_dir))
