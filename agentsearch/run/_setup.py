"""The one-time steps of a run, each done by whichever worker gets there first: the seed program's
dev evaluation, and the search space (bootstrapped demos, proposed instructions).

Every worker needs both before it can search; the first to take the step's lease does it and the
rest wait for its result in the store (or take the step over if that worker dies).
"""

from __future__ import annotations

import random
from typing import Any

import dspy

from agentsearch.data import LabelledExample
from agentsearch.exceptions import AgentSearchError, BudgetRefusal, LMUnavailableError
from agentsearch.lm._failures import FailureKind
from agentsearch.optimizers import build_space, optimizer_entry, propose_instructions
from agentsearch.optimizers._demo_sets import class_labels, make_demo_sets
from agentsearch.run._context import RunContext
from agentsearch.run._evaluation import Scoring
from agentsearch.run._view import wait_for
from agentsearch.search_space import (
    CandidateSpec,
    PredictorSpec,
    SearchSpace,
    build_program,
    node_signature,
    program_role,
)
from agentsearch.search_space._user import (
    UserProgram,
    load_user_program,
    predictor_signature,
    program_traces,
)
from agentsearch.store import CandidateRecord, CandidateStatus, EvaluationRecord, Split
from agentsearch.store._base import CANDIDATE_LEASE
from agentsearch.task import Task

SPACE_LEASE = "space"


def seed_spec(task: Task) -> CandidateSpec:
    """The program as the user wrote it: one Predict with the task's instructions, DSPy's chat format;
    or the user's own program (``program.module``) with its predictors as they are."""
    if task.program.module is not None:
        program = load_user_program(str(task.program.reference), base_dir=task.base_dir)
        return CandidateSpec(topology="program", program=task.program.reference, predictors=tuple(
            PredictorSpec(name=name, signature=predictor_signature(predictor),
                          instructions=predictor.signature.instructions, format="chat")
            for name, predictor in program.named_predictors()))
    return CandidateSpec(predictors=(PredictorSpec(name="answer", signature=node_signature(task.program.signature, "answer"),
                                                   instructions=task.program.instructions, format="chat"),))


def planned_space(task: Task, *, train_size: int) -> SearchSpace:
    """The shape of the space a run of the task would search, before any LM call makes its contents.

    Instructions and demo sets are placeholders; counts are upper bounds (repeated demo sets are dropped).
    """
    search = task.search
    prompt = "prompt" in search.space_levels
    if task.program.module is not None:
        seed = seed_spec(task)
        nodes = [{"name": node.name, "signature": node.signature,
                  "instructions": [node.instructions, *(f"instruction {i}" for i in range(1, search.num_instructions))]}
                 for node in seed.predictors]
        return SearchSpace(
            signature=task.program.signature, instructions=(task.program.instructions,),
            demo_sets=tuple((f"demo{i}",) * min(search.max_demos, train_size) for i in range(search.num_demo_sets))
            if search.max_demos and train_size else (),
            retrieval_pool=(), demos={}, formats=tuple(search.formats), max_demos=min(search.max_demos, train_size),
            levels=tuple(search.space_levels), modules=search.modules,
            program={"reference": task.program.reference, "nodes": nodes})
    demo_sets = tuple((f"demo{i}",) * min(search.max_demos, train_size) for i in range(search.num_demo_sets))
    return SearchSpace(
        signature=node_signature(task.program.signature, "answer"),
        instructions=tuple(f"instruction {i}" for i in range(search.num_instructions if prompt else 1)),
        demo_sets=demo_sets if search.max_demos and train_size else (),
        retrieval_pool=("pool",) if search.modules.retrieves(search.space_levels, search.max_demos) and train_size else (),
        demos={}, formats=tuple(search.formats), max_demos=min(search.max_demos, train_size),
        levels=tuple(search.space_levels), modules=search.modules,
    )


def _dev_evaluation(ctx: RunContext, candidate_id: int) -> EvaluationRecord | None:
    return next((e for e in ctx.storage.list_evaluations(candidate_id=candidate_id) if e.split == Split.DEV), None)


def seed_and_evaluate(ctx: RunContext, scoring: Scoring) -> tuple[CandidateRecord, EvaluationRecord]:
    """The seed candidate and its dev evaluation ('running' when a budget cut it short)."""
    spec = seed_spec(ctx.task)
    seed = ctx.storage.seed_candidate(ctx.run.id, spec.model_dump(mode="json"), spec.hash)
    lease = f"{CANDIDATE_LEASE}{seed.id}"
    while True:
        evaluation = _dev_evaluation(ctx, seed.id)
        if evaluation is not None and evaluation.status.finished:
            return seed, evaluation
        if ctx.storage.acquire_lease(ctx.run.id, lease, ctx.holder, ctx.lease_s):
            ctx.callback.on_phase("evaluating the seed program on dev")
            evaluation = scoring.evaluate(seed, Split.DEV, ctx.split(Split.DEV))
            if evaluation.status.finished:
                ctx.storage.set_candidate_status(seed.id, CandidateStatus.COMPLETE)
            else:
                ctx.storage.release_lease(ctx.run.id, lease, ctx.holder)
            return seed, evaluation

        def settled() -> bool:
            found = _dev_evaluation(ctx, seed.id)
            return (found is not None and found.status.finished) or ctx.storage.lease_holder(ctx.run.id, lease) is None

        wait_for(ctx, settled, "the seed program's dev evaluation")


def search_space(ctx: RunContext, scoring: Scoring, seed: CandidateRecord,
                 seed_dev: EvaluationRecord) -> SearchSpace | None:
    """The run's space: read from the store, or built here by the first worker to take the lease.
    None when a budget stopped the building."""
    def kept() -> dict[str, Any] | None:
        run = ctx.storage.get_run(ctx.run.id)
        return None if run is None else run.space

    while True:
        stored = kept()
        if stored is not None:
            return _read_space(ctx, stored)
        if ctx.storage.acquire_lease(ctx.run.id, SPACE_LEASE, ctx.holder, ctx.lease_s):
            try:
                stored = kept()
                if stored is not None:
                    return _read_space(ctx, stored)
                space = _build_space(ctx, scoring, seed, seed_dev)
                return None if space is None else _read_space(ctx, ctx.storage.set_run_space(ctx.run.id, space.to_dict()))
            finally:
                ctx.storage.release_lease(ctx.run.id, SPACE_LEASE, ctx.holder)
        wait_for(ctx, lambda: kept() is not None or ctx.storage.lease_holder(ctx.run.id, SPACE_LEASE) is None,
                 "the search space")


def _read_space(ctx: RunContext, stored: dict[str, Any]) -> SearchSpace:
    if "signature" not in stored:
        raise AgentSearchError(f"run {ctx.run.name} was started by an older agentsearch whose search space "
                               f"this version cannot read; start a new run")
    return SearchSpace.from_dict(stored)


UNPARSED_SEED = ("every dev answer of your program failed to parse under DSPy's chat adapter (a small model often "
                 "writes another format): let the search try others too, formats=[\"chat\", \"json\", "
                 "\"completion\"] (AgentSearch) or search.formats (a task file)")


def _build_program_space(ctx: RunContext, seed: CandidateRecord, seed_dev: EvaluationRecord) -> SearchSpace | None:
    """The space of the user's own program: demo sets from its passing traces on train (every
    predictor's demos from the same traces), instruction variants proposed per predictor from what
    it read and wrote there."""
    task, search = ctx.task, ctx.task.search
    if seed_dev.n and seed_dev.n_errors == seed_dev.n and list(search.formats) == ["chat"] \
            and "AdapterParseError" in (seed_dev.top_error or ""):
        ctx.callback.on_phase(UNPARSED_SEED)
    rng = random.Random(task.seed)
    spec = seed_spec(task)
    traces: dict[str, dict[str, dict[str, Any]]] = {}
    shape = {"reference": task.program.reference,
             "nodes": [{"name": node.name, "signature": node.signature} for node in spec.predictors]}
    try:
        if search.bootstrap_examples and search.max_demos:
            ctx.callback.on_phase("bootstrapping demos: your program's traces on train")
            train = ctx.split(Split.TRAIN)
            subset = rng.sample(train, min(search.bootstrap_examples, len(train)))
            program = build_program(spec, {}, ctx.lm, base_dir=task.base_dir)
            assert isinstance(program, UserProgram)
            traces, usage = program_traces(program, subset, ctx.evaluator)
            ctx.charge(usage)
        nodes = []
        for node in spec.predictors:
            seen = [LabelledExample(example_id, dspy.Example(steps[node.name]))
                    for example_id, steps in traces.items() if node.name in steps]
            found: list[str] = []
            if search.num_instructions > 1 and seen and optimizer_entry(search.optimizer).proposed_instructions:
                ctx.callback.on_phase(f"proposing {search.num_instructions - 1} instructions for {node.name}")
                found, usage = propose_instructions(ctx.proposer(), CandidateSpec(predictors=(node.model_copy(
                    update={"name": "answer"}),)), seen, count=search.num_instructions - 1, rng=rng,
                    role=program_role(shape, task.program.signature, node.name))
                ctx.charge(usage)
            nodes.append({"name": node.name, "signature": node.signature, "instructions": [node.instructions, *found]})
    except LMUnavailableError as refusal:
        if refusal.failure.kind is not FailureKind.BUDGET:
            raise  # an outage: the run fails, resumable (the lifecycle books what it spent)
        if refusal.usage is not None:  # the budget is spent: the run stops, resumable with more
            ctx.charge(refusal.usage)
        ctx.stop_reason = ctx.budget.exhausted() or "budget used up"
        return None
    # Labelled demos too, as DSPy's BootstrapFewShot adds them: a train example is a demo as it is for
    # each predictor whose fields it holds (a one-predictor program over the task's signature, say).
    # They matter when few traces pass: a small LM whose chat answers cannot be parsed passes none.
    train = ctx.split(Split.TRAIN)
    labelled: dict[str, dict[str, dict[str, Any]]] = {}
    fields_of = {node.name: list(dspy.Signature(node.signature).fields) for node in spec.predictors}
    for item in train:
        fields = dict(item.example.items())
        steps = {name: {field: fields[field] for field in wanted} for name, wanted in fields_of.items()
                 if all(field in fields for field in wanted)}
        if steps and item.id not in traces:
            labelled[item.id] = steps
    demo_sets = make_demo_sets(sorted(traces), sorted(labelled), num_sets=search.num_demo_sets, size=search.max_demos,
                               rng=rng, label_of=class_labels(train, task.program.output_fields()))
    used = {example_id for demo_set in demo_sets for example_id in demo_set}
    steps_of = {**labelled, **traces}  # a passing trace, where there is one, over the bare example
    return SearchSpace(
        signature=task.program.signature, instructions=(task.program.instructions,), demo_sets=demo_sets,
        retrieval_pool=(), demos={f"{name}:{example_id}": fields for example_id, steps in steps_of.items()
                                  if example_id in used for name, fields in steps.items()},
        formats=tuple(search.formats), max_demos=search.max_demos if demo_sets else 0, levels=tuple(search.space_levels),
        modules=search.modules, program={"reference": task.program.reference, "nodes": nodes})


def _build_space(ctx: RunContext, scoring: Scoring, seed: CandidateRecord,
                 seed_dev: EvaluationRecord) -> SearchSpace | None:
    if ctx.task.program.module is not None:
        return _build_program_space(ctx, seed, seed_dev)
    task, storage = ctx.task, ctx.storage
    search = task.search
    rng = random.Random(task.seed)
    train = ctx.split(Split.TRAIN)
    bootstrapped: dict[str, dict[str, Any]] = {}
    if search.bootstrap_examples and search.max_demos:
        # A seed none of whose dev answers could be parsed (a small LM and the chat format) would
        # bootstrap no demos from train either: those calls are better spent on candidates.
        if seed_dev.n_errors == seed_dev.n:
            ctx.callback.on_phase("no bootstrapping: the seed's every dev answer failed to parse")
        else:
            ctx.callback.on_phase("bootstrapping demos: seed program on train")
            subset = rng.sample(train, min(search.bootstrap_examples, len(train)))
            evaluation = scoring.evaluate(seed, Split.TRAIN, subset)
            if not evaluation.status.finished:
                return None
            inputs = {item.id: dict(item.example.inputs().items()) for item in train}
            bootstrapped = {
                result.example_id: {**inputs[result.example_id], **result.prediction}
                for result in storage.list_example_results(evaluation.id)
                if result.error is None and result.score >= 1.0 and result.prediction and result.example_id in inputs
            }
    instructions: list[str] = []
    # an optimizer that writes its own instructions (evolve, from failures) needs no proposals up front
    if (search.num_instructions > 1 and "prompt" in search.space_levels
            and optimizer_entry(search.optimizer).proposed_instructions):
        ctx.callback.on_phase(f"proposing {search.num_instructions - 1} instructions")
        try:
            instructions, usage = propose_instructions(
                ctx.proposer(), seed_spec(task), train, count=search.num_instructions - 1, rng=rng
            )
        except BudgetRefusal as refusal:  # the budget is spent: the run stops, resumable with more
            if refusal.usage is not None:
                ctx.charge(refusal.usage)
            ctx.stop_reason = ctx.budget.exhausted() or "budget used up"
            return None
        ctx.charge(usage)
    return build_space(
        seed_spec(task), train=train, bootstrapped=bootstrapped, instructions=instructions,
        formats=search.formats, num_demo_sets=search.num_demo_sets, max_demos=search.max_demos,
        levels=search.space_levels, modules=search.modules, rng=rng,
    )
