"""Your own DSPy program, searched: its named predictors are the nodes of a ``program`` spec.

The search never rewrites your ``forward``: a candidate is a deep copy of your module whose
predictors get the candidate's instructions and demos, so what is scored is exactly what is
returned (an instance of your class, which DSPy's own ``save``/``load`` round-trip). The program
comes from a ``package.module:function`` reference called with no arguments (a task file's
``program.module``), or from memory (``AgentSearch.compile``); it is built once per process and
copied for every candidate.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy

from agentsearch._references import resolve_callable
from agentsearch.exceptions import TaskSpecError

_BUILT: dict[tuple[str, str], dspy.Module] = {}
_LOCK = threading.Lock()


def load_user_program(reference: str, *, base_dir: Path | None = None) -> dspy.Module:
    """The module ``reference``'s function returns (built once per process; never mutate it: copy it)."""
    key = (reference, str(base_dir))
    with _LOCK:
        if key in _BUILT and not reference.startswith("object:"):
            return _BUILT[key]
        build = resolve_callable(reference, base_dir=base_dir, what="program")
        try:
            program = build()
        except Exception as exc:  # noqa: BLE001 - the user's code: say what it raised, in one line
            first = (str(exc).splitlines() or [""])[0]
            raise TaskSpecError(f"{reference}() raised {type(exc).__name__}: {first}") from None
        if not isinstance(program, dspy.Module):
            raise TaskSpecError(f"{reference}() returned {type(program).__name__}, not a dspy.Module")
        if not program.named_predictors():
            raise TaskSpecError(f"{reference}() returned a {type(program).__name__} with no predictors to search "
                                "(no dspy.Predict, ChainOfThought or other module holding one)")
        _BUILT[key] = program
        return program


def predictor_signature(predictor: dspy.Predict) -> str:
    """A predictor's fields as a string signature (for proposals and reports; the program keeps its own)."""
    signature = predictor.signature
    return f"{', '.join(signature.input_fields)} -> {', '.join(signature.output_fields)}"


def configured(program: dspy.Module, spec: Any, demos: Mapping[str, Mapping[str, Any]]) -> dspy.Module:
    """A deep copy of ``program`` whose predictors carry the spec's instructions and demos."""
    copy = program.deepcopy()
    nodes = {node.name: node for node in spec.predictors}
    for name, predictor in copy.named_predictors():
        node = nodes.get(name)
        if node is None:
            raise TaskSpecError(f"the program has a predictor {name!r} the candidate does not set: "
                                "the program changed since the run began")
        predictor.signature = predictor.signature.with_instructions(node.instructions)
        if node.demo_ids:  # none chosen: the predictor keeps the demos you gave it (the seed is your program)
            predictor.demos = [dspy.Example(dict(demos[demo_id])) for demo_id in node.demo_ids]
    missing = set(nodes) - {name for name, _ in copy.named_predictors()}
    if missing:
        raise TaskSpecError(f"the candidate sets predictors the program does not have: {sorted(missing)}")
    return copy


class UserProgram(dspy.Module):
    """The candidate's configured copy of your program, run under the search's LM."""

    def __init__(self, spec: Any, demos: Mapping[str, Mapping[str, Any]], lm: dspy.BaseLM | None = None, *,
                 base_dir: Path | None = None, pin_lm: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.demo_texts = {demo_id: dict(demos[demo_id]) for demo_id in sorted(spec.demo_ids())}
        self.lm = lm
        self.pin_lm = pin_lm
        self.program = configured(load_user_program(spec.program, base_dir=base_dir), spec, demos)

    def forward(self, **inputs: Any) -> dspy.Prediction:
        from agentsearch.search_space._program import lm_override

        with dspy.context(**lm_override(self.lm, self.pin_lm)):
            return self.program(**inputs)


def program_traces(program: UserProgram, examples: Sequence[Any], metric: Any) -> tuple[dict[str, dict[str, dict[str, Any]]], Any]:
    """Run the program on ``examples`` (LabelledExample) recording DSPy's trace; for each example the
    metric passes (score 1), what each predictor read and wrote on it. Returns that, and the usage.

    An example the program fails on (an unparsable answer) gives no demos; an LM outage or a refused
    budget stops the run (raised), as anywhere else."""
    from agentsearch.exceptions import BudgetRefusal, LMUnavailableError
    from agentsearch.lm import UsageMeter

    names = {id(predictor): name for name, predictor in program.program.named_predictors()}
    meter = UsageMeter()
    traces: dict[str, dict[str, dict[str, Any]]] = {}
    for item in examples:
        with dspy.context(trace=[], usage_tracker=meter):
            try:
                prediction = program(**dict(item.example.inputs().items()))
            except (LMUnavailableError, BudgetRefusal):
                raise
            except Exception:  # noqa: BLE001 - the program's own failure on this example: no demo from it
                continue
            trace = list(dspy.settings.trace or [])
        try:
            passed = float(metric(item.example, prediction)) >= 1.0
        except Exception:  # noqa: BLE001 - a metric failing on a prediction is the evaluator's to report
            passed = False
        steps = {names[id(predictor)]: {**inputs, **dict(output.items())}
                 for predictor, inputs, output in trace if id(predictor) in names}
        if passed and steps:
            traces[item.id] = steps
    return traces, meter.usage
