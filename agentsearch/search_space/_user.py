"""Your own DSPy program, searched: its named predictors are the nodes of a ``program`` spec.

The search never rewrites your ``forward``: a candidate is a deep copy of your module whose
predictors get the candidate's instructions and demos, so what is scored is exactly what is
returned (an instance of your class, which DSPy's own ``save``/``load`` round-trip). The program
comes from a ``package.module:function`` reference called with no arguments (a task file's
``program.module``), or from memory (``AgentSearch.compile``); it is built once per process and
copied for every candidate. A compiled student whose class another process can make again is
named ``package.module:Class@<digest>``: the class, given the DSPy state of that digest, which the
run's task keeps (``program.state``); in the compiling process the name stands for a copy of the
student itself.

A candidate may also run a predictor another way (the module level: chain of thought,
self-consistency, best-of-n; the prompt level: its own prompt format). That predictor stays in
its place, the same object your ``forward`` calls, and answers the same fields: its class becomes
a subclass of its own (``SearchedPredictor``) that runs it so. DSPy's state format has no place
for a reasoning kind or an adapter, so its ``dump_state`` adds an ``agentsearch`` entry that plain
``load`` ignores; ``load_into`` (``agentsearch.load_into``) restores it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy
from pydantic import ValidationError

from agentsearch._references import resolve_callable
from agentsearch.exceptions import (
    ProgramFileError,
    TaskSpecError,
    describe_validation_error,
)
from agentsearch.search_space._adapters import make_adapter
from agentsearch.search_space._spec import CandidateSpec, PredictorSpec
from agentsearch.search_space.kinds import node_kind

_BUILT: dict[tuple[str, str], dspy.Module] = {}
_STATES: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()
STATE_MARK = "@"
"""``package.module:Class@<digest>``: the class, built and then given the DSPy state of that digest."""


def state_digest(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def keep_program_state(state: Mapping[str, Any]) -> str:
    """Remember a program's DSPy state in this process, by its digest (a task that carries one was read)."""
    digest = state_digest(state)
    with _LOCK:
        _STATES.setdefault(digest, json.loads(json.dumps(state)))
    return digest


def with_state(reference: str, state: Mapping[str, Any]) -> str:
    return f"{reference}{STATE_MARK}{keep_program_state(state)}"


def split_reference(reference: str) -> tuple[str, dict[str, Any] | None]:
    """The reference to build, and the state to load into it (None: none)."""
    base, mark, digest = reference.rpartition(STATE_MARK) if STATE_MARK in reference else (reference, "", "")
    if not mark:
        return reference, None
    with _LOCK:
        state = _STATES.get(digest)
    if state is None:
        raise TaskSpecError(f"program {reference!r}: its DSPy state is kept with the run's task (program.state), "
                            "which this process has not read")
    return base, state


_OVERRIDES: dict[str, dspy.Module] = {}


def in_process_override(reference: str, program: dspy.Module) -> None:
    """In this process, ``reference`` is ``program`` (a copy of it): the student AgentSearch.compile was
    handed, with whatever its constructor cannot make again; other processes build the reference."""
    with _LOCK:
        _OVERRIDES[reference] = program.deepcopy()


def load_user_program(reference: str, *, base_dir: Path | None = None) -> dspy.Module:
    """The module ``reference``'s function returns (built once per process; never mutate it: copy it),
    with the DSPy state the reference's digest names loaded into it."""
    key = (reference, str(base_dir))
    with _LOCK:
        if reference in _OVERRIDES:
            return _OVERRIDES[reference]
        if key in _BUILT and not reference.startswith("object:"):
            return _BUILT[key]
    built, state = split_reference(reference)
    with _LOCK:
        build = resolve_callable(built, base_dir=base_dir, what="program")
        try:
            program = build()
            if state is not None:
                program.load_state(state)
        except Exception as exc:  # noqa: BLE001 - the user's code: say what it raised, in one line
            first = (str(exc).splitlines() or [""])[0]
            raise TaskSpecError(f"{built}() raised {type(exc).__name__}: {first}") from None
        if not isinstance(program, dspy.Module):
            raise TaskSpecError(f"{built}() returned {type(program).__name__}, not a dspy.Module")
        if not program.named_predictors():
            raise TaskSpecError(f"{reference}() returned a {type(program).__name__} with no predictors to search "
                                "(no dspy.Predict, ChainOfThought or other module holding one)")
        _BUILT[key] = program
        return program


def predictor_signature(predictor: dspy.Predict) -> str:
    """A predictor's fields as a string signature (for proposals and reports; the program keeps its own)."""
    signature = predictor.signature
    return f"{', '.join(signature.input_fields)} -> {', '.join(signature.output_fields)}"


AS_WRITTEN = {"module": "predict", "format": "chat"}
"""A predictor run as your program runs it: its own module, the adapter DSPy is configured with."""
RUN_OPTIONS = ("module", "format", "samples", "judge")
"""What of a node's spec says how its predictor runs (kept in its DSPy state as ``agentsearch``)."""


class SearchedPredictor:
    """Mixed into one of your predictors' class: runs it as the search chose.

    ``agentsearch`` holds the node's ``module`` (a kind that wraps predictors), ``format`` (``chat``:
    the configured adapter; else that predictor's own), and the kind's ``samples`` and ``judge``.
    The predictor's own signature, instructions and demos are what the kind is built from at each
    call, so a later ``load`` of other prompts applies. A call that passes more than the
    signature's inputs (``config=``, ``demos=``...) runs the predictor as written, under its format.
    """

    agentsearch: dict[str, Any]
    _agentsearch_base_dir: Path | None = None

    def dump_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().dump_state(*args, **kwargs)  # type: ignore[misc]
        state["agentsearch"] = dict(self.agentsearch)
        return state

    def forward(self, **kwargs: Any) -> Any:
        settings = self.agentsearch
        adapter = {} if settings["format"] == "chat" else {"adapter": make_adapter(settings["format"])}
        signature = self.signature  # type: ignore[attr-defined]
        with dspy.context(**adapter):
            if settings["module"] == "predict" or set(kwargs) - set(signature.input_fields):
                return super().forward(**kwargs)  # type: ignore[misc]
            return self._as_kind(signature)(**kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        # the kinds' modules are synchronous; a thread keeps the caller's DSPy context (contextvars are copied)
        return await asyncio.to_thread(self.forward, **kwargs)

    def _as_kind(self, signature: Any) -> dspy.Module:
        settings = self.agentsearch
        if "reasoning" in signature.output_fields:  # your ChainOfThought: the kind adds the reasoning back
            signature = signature.delete("reasoning")
        spec = PredictorSpec(signature=f"{', '.join(signature.input_fields)} -> {', '.join(signature.output_fields)}",
                             **{key: settings[key] for key in RUN_OPTIONS if key in settings and key != "format"})
        module = node_kind(spec.module).build(spec, signature, {}, self._agentsearch_base_dir)
        for _, predictor in module.named_predictors():
            if set(predictor.signature.output_fields) & set(signature.output_fields):
                predictor.demos = list(self.demos)  # type: ignore[attr-defined]
        return module


class SearchedPredict(SearchedPredictor, dspy.Predict):
    """A ``dspy.Predict`` of your program run as the search chose."""


_SEARCHED: dict[type, type] = {dspy.Predict: SearchedPredict}


def run_as(predictor: dspy.Predict, settings: Mapping[str, Any], base_dir: Path | None = None) -> None:
    """Make ``predictor`` (in place) run as ``settings`` (``RUN_OPTIONS``) say; as written when they are the defaults."""
    options = {key: settings[key] for key in RUN_OPTIONS if key in settings}
    spec = PredictorSpec.model_validate({"signature": "x -> y", **options})  # the kind's options checked
    if spec.module != "predict" and not node_kind(spec.module).wraps_predictors:
        raise ValueError(f"module {spec.module!r} cannot run in place of a predictor of your program")
    cls = type(predictor)
    if {"module": spec.module, "format": spec.format} == AS_WRITTEN:
        if issubclass(cls, SearchedPredictor):  # back to the class it had
            predictor.__class__ = next(base for base in cls.__mro__[1:] if not issubclass(base, SearchedPredictor))
            del predictor.agentsearch
        return
    if not issubclass(cls, SearchedPredictor):
        with _LOCK:
            if cls not in _SEARCHED:
                _SEARCHED[cls] = type(cls.__name__, (SearchedPredictor, cls), {"__doc__": cls.__doc__})
            predictor.__class__ = _SEARCHED[cls]
    searched: Any = predictor
    searched.agentsearch = run_settings(spec)
    searched._agentsearch_base_dir = base_dir


def run_settings(spec: PredictorSpec) -> dict[str, Any]:
    """A node's ``agentsearch`` entry in its predictor's DSPy state: how it runs."""
    return spec.model_dump(include=set(RUN_OPTIONS), exclude_defaults=True) | {"module": spec.module,
                                                                               "format": spec.format}


def load_into(program: dspy.Module, path: str | Path, *, base_dir: str | Path | None = None) -> dspy.Module:
    """Load a state saved from a program agentsearch returned (``program.save(path)``, or
    ``agentsearch export --format dspy``) into ``program``, a fresh instance of your class: the
    instructions and demos, as plain ``program.load(path)`` does, and how each predictor runs
    (its reasoning kind and prompt format), which plain DSPy does not keep. ``base_dir``: where a
    best-of-n reward's ``package.module:function`` is imported from. Returns ``program``."""
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProgramFileError(f"{path}: cannot read the saved state ({exc})") from None
    program.load(str(path))
    for name, predictor in program.named_predictors():
        settings = (state.get(name) or {}).get("agentsearch") if isinstance(state, dict) else None
        if settings is None:
            continue
        try:
            run_as(predictor, settings, None if base_dir is None else Path(base_dir))
        except ValidationError as exc:
            raise ProgramFileError(f"{path}: {describe_validation_error(exc, prefix=(name, 'agentsearch'))}") from None
        except (TypeError, ValueError) as exc:
            raise ProgramFileError(f"{path}: {name}.agentsearch: {exc}") from None
    return program


def configured(program: dspy.Module, spec: Any, demos: Mapping[str, Mapping[str, Any]], *,
               base_dir: Path | None = None) -> dspy.Module:
    """A deep copy of ``program`` whose predictors carry the spec's instructions and demos, and run
    with the spec's kind and format."""
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
        if {"module": node.module, "format": node.format} != AS_WRITTEN:
            run_as(predictor, node.model_dump(include=set(RUN_OPTIONS)), base_dir)
    missing = set(nodes) - {name for name, _ in copy.named_predictors()}
    if missing:
        raise TaskSpecError(f"the candidate sets predictors the program does not have: {sorted(missing)}")
    return copy


def candidate_state(student_state: Mapping[str, Any], spec: CandidateSpec,
                    demos: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The DSPy state of the candidate's program, written from the student's state without its class:
    what ``configured(...).dump_state()`` gives (each predictor's instructions, its demos where the
    candidate chose some, its ``agentsearch`` entry where it runs other than as written)."""
    state = json.loads(json.dumps(dict(student_state)))
    for node in spec.predictors:
        entry = state.get(node.name)
        if not isinstance(entry, dict) or not isinstance(entry.get("signature"), dict):
            raise TaskSpecError(f"the student's state has no predictor {node.name!r}: the program changed since the "
                                "run began")
        entry["signature"]["instructions"] = node.instructions
        if node.demo_ids:
            entry["demos"] = [dict(demos[demo_id]) for demo_id in node.demo_ids]
        entry.pop("agentsearch", None)
        if {"module": node.module, "format": node.format} != AS_WRITTEN:
            entry["agentsearch"] = run_settings(node)
    return state


class UserProgram(dspy.Module):
    """The candidate's configured copy of your program, run under the search's LM."""

    def __init__(self, spec: Any, demos: Mapping[str, Mapping[str, Any]], lm: dspy.BaseLM | None = None, *,
                 base_dir: Path | None = None, pin_lm: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.demo_texts = {demo_id: dict(demos[demo_id]) for demo_id in sorted(spec.demo_ids())}
        self.lm = lm
        self.pin_lm = pin_lm
        self.program = configured(load_user_program(spec.program, base_dir=base_dir), spec, demos, base_dir=base_dir)
        self.student_state = split_reference(spec.program)[1]
        """The DSPy state the student was given (AgentSearch.compile's, kept with the run); None: as built."""

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
