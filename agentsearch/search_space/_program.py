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

from agentsearch.exceptions import ProgramFileError, describe_validation_error
from agentsearch.search_space._adapters import make_adapter
from agentsearch.search_space._spec import CandidateSpec, PredictorSpec

PROGRAM_FILE_VERSION = 1

Demos = Mapping[str, Mapping[str, Any]]


def _build_predictor(spec: PredictorSpec, demos: Demos) -> dspy.Module:
    signature = dspy.Signature(spec.signature, spec.instructions)
    module = dspy.ChainOfThought(signature) if spec.module == "chain_of_thought" else dspy.Predict(signature)
    examples = [dspy.Example(dict(demos[demo_id])) for demo_id in spec.demo_ids]
    for _, predictor in module.named_predictors():
        predictor.demos = list(examples)
    return module


class SpecProgram(dspy.Module):
    """The DSPy program a CandidateSpec describes; each predictor runs with its own prompt format."""

    def __init__(self, spec: CandidateSpec, demos: Demos, lm: dspy.BaseLM | None = None) -> None:
        super().__init__()
        missing = spec.demo_ids() - set(demos)
        if missing:
            raise KeyError(f"demos not found: {sorted(missing)[:3]}")
        self.spec = spec
        self.demo_texts = {demo_id: dict(demos[demo_id]) for demo_id in sorted(spec.demo_ids())}
        self.lm = lm
        self.adapters = [make_adapter(predictor.format) for predictor in spec.predictors]
        self.steps = [_build_predictor(predictor, demos) for predictor in spec.predictors]
        self._step_inputs = [list(dspy.Signature(predictor.signature).input_fields) for predictor in spec.predictors]

    def forward(self, **inputs: Any) -> dspy.Prediction:
        overrides: dict[str, Any] = {} if self.lm is None else {"lm": self.lm}
        values = dict(inputs)
        prediction = None
        for step, wanted, adapter in zip(self.steps, self._step_inputs, self.adapters, strict=True):
            with dspy.context(adapter=adapter, **overrides):
                prediction = step(**{name: values[name] for name in wanted})
            values.update(prediction.items())
        return prediction


def _program_document(program: SpecProgram, *, lm: dict[str, Any] | None, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "agentsearch_program": PROGRAM_FILE_VERSION,
        "spec": program.spec.model_dump(mode="json"),
        "demos": program.demo_texts,
        "lm": lm,
        "metadata": metadata,
    }


def save_program(program: SpecProgram, path: str | Path, *, lm: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    document = _program_document(program, lm=lm, metadata=metadata or {})
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _validated(path: Path, key: str, model: Any, value: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ProgramFileError(f"{path}: {describe_validation_error(exc, prefix=(key,))}") from None


def load_program(path: str | Path, *, lm: dspy.BaseLM | None = None) -> SpecProgram:
    """Rebuild a saved program; its LM comes from the file unless ``lm`` is given."""
    from agentsearch.lm import build_lm
    from agentsearch.task import LMConfig

    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProgramFileError(f"{path}: cannot read program file ({exc})") from None
    if not isinstance(document, dict) or document.get("agentsearch_program") != PROGRAM_FILE_VERSION:
        raise ProgramFileError(f"{path}: agentsearch_program: not an agentsearch program file (version {PROGRAM_FILE_VERSION})")
    spec = _validated(path, "spec", CandidateSpec, document.get("spec"))
    lm_config = _validated(path, "lm", LMConfig, document["lm"]) if document.get("lm") else None
    demos = document.get("demos") or {}
    missing = spec.demo_ids() - set(demos)
    if missing:
        raise ProgramFileError(f"{path}: demos: missing demo {sorted(missing)[0]!r}")
    if lm is None and lm_config is not None:
        lm = build_lm(lm_config)
    return SpecProgram(spec, demos, lm)
