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


class _Tracing(dspy.Module):
    """Runs the program under DSPy's trace and keeps, per input, what each of its predictors read and wrote."""

    def __init__(self, program: UserProgram) -> None:
        super().__init__()
        self.program = program
        self.names = {id(predictor): name for name, predictor in program.program.named_predictors()}
        self.steps: dict[str, dict[str, dict[str, Any]]] = {}

    def forward(self, **inputs: Any) -> dspy.Prediction:
        with dspy.context(trace=[]):
            prediction = self.program(**inputs)
            trace = list(dspy.settings.trace or [])
        self.steps[_key(inputs)] = {self.names[id(predictor)]: {**seen, **dict(output.items())}
                                    for predictor, seen, output in trace if id(predictor) in self.names}
        return prediction


def _key(inputs: Mapping[str, Any]) -> str:
    return repr(sorted(inputs.items()))


def program_traces(program: UserProgram, examples: Sequence[Any], evaluator: Any) -> tuple[dict[str, dict[str, dict[str, Any]]], Any]:
    """Score the program on ``examples`` (LabelledExample) with the run's evaluator, recording DSPy's
    trace; for each example scored 1, what each predictor read and wrote on it. Returns that, and
    the usage of every call made (scored or not).

    The evaluator judges failures as everywhere else: an example the program fails on gives no
    demos; an LM outage (or a refused budget call) is raised, never taken for a failed example."""
    from agentsearch.lm import Usage

    tracing = _Tracing(program)
    outcomes = [outcome for batch in evaluator.run(tracing, examples) for outcome in batch]
    usage = Usage()
    for outcome in outcomes:
        usage.add(outcome.usage)
    error = evaluator.unscored_error(outcomes)
    if error is not None:
        error.usage = usage  # the caller books what was spent before it stops
        raise error
    inputs = {item.id: _key(dict(item.example.inputs().items())) for item in examples}
    traces = {outcome.example_id: tracing.steps[inputs[outcome.example_id]] for outcome in outcomes
              if outcome.error is None and outcome.score >= 1.0 and tracing.steps.get(inputs[outcome.example_id])}
    return traces, usage
