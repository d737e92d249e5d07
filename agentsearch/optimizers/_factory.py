"""Optimizers by name: the one place a name in a task file becomes an optimizer.

Each entry builds its optimizer from the run's read-only view (``RunView``); the run loop knows
nothing of any optimizer's construction. Adding an optimizer is its module, one ``register``
entry here and its test; the task file accepts every name registered for its levels.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentsearch.store._base import Level

if TYPE_CHECKING:
    from agentsearch.optimizers._base import BaseOptimizer, RunView
    from agentsearch.optimizers._evolve import Failure, ScoredCandidate
    from agentsearch.optimizers._meta_agent import DesignTask

Builder = Callable[["RunView"], "BaseOptimizer"]


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    build: Builder
    levels: tuple[str, ...]
    """The levels whose candidates it proposes: prompt and module (``search.optimizer``), or agent (the
    agent stage's)."""
    cost_aware: bool = False
    """It can search ``objectives: [score, cost]``."""
    proposed_instructions: bool = True
    """The space it searches needs instructions proposed up front (evolve writes its own from failures)."""


_ENTRIES: dict[str, OptimizerEntry] = {}


def register(name: str, *, levels: tuple[str, ...], cost_aware: bool = False,
             proposed_instructions: bool = True) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        if name in _ENTRIES:
            raise ValueError(f"optimizer {name!r} is registered twice")
        _ENTRIES[name] = OptimizerEntry(name, builder, levels, cost_aware, proposed_instructions)
        return builder
    return add


def optimizer_names(level: str | None = None) -> tuple[str, ...]:
    return tuple(name for name, entry in _ENTRIES.items() if level is None or level in entry.levels)


def optimizer_entry(name: str) -> OptimizerEntry:
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(optimizer_names())}") from None


def make_optimizer(name: str, view: RunView) -> BaseOptimizer:
    optimizer = optimizer_entry(name).build(view)
    optimizer.name = name
    return optimizer


def _optuna(name: str) -> Builder:
    def build(view: RunView) -> BaseOptimizer:
        from agentsearch.optimizers._optuna import OptunaOptimizer

        return OptunaOptimizer.create(view, name)
    return build


SPACE_LEVELS = (Level.PROMPT, Level.MODULE)
register("tpe", levels=SPACE_LEVELS, cost_aware=True)(_optuna("tpe"))
register("random", levels=SPACE_LEVELS, cost_aware=True)(_optuna("random"))


def _population(view: RunView) -> Callable[[], list[ScoredCandidate]]:
    """The run's prompt- and module-level candidates fully scored on dev, read from the store."""
    from agentsearch.optimizers._evolve import ScoredCandidate
    from agentsearch.search_space import CandidateSpec, parse_spec

    def population() -> list[ScoredCandidate]:
        scored = []
        for candidate in view.candidates(levels=SPACE_LEVELS):
            scores = view.dev_scores(candidate.id)
            spec = parse_spec(candidate.spec)
            if scores is not None and isinstance(spec, CandidateSpec):
                scored.append(ScoredCandidate(candidate.id, spec, scores, candidate.number,
                                              view.program_calls(candidate.id)))
        return scored
    return population


@register("evolve", levels=SPACE_LEVELS, proposed_instructions=False)
def _evolve(view: RunView) -> BaseOptimizer:
    from agentsearch.optimizers._evolve import EvolveOptimizer

    assert view.space is not None, "evolve mutates candidates of the run's space"

    return EvolveOptimizer(
        view.space, view.proposer(), population=_population(view), failures=_failures(view),
        asked=lambda: sum(c.optimizer == "evolve" for c in view.candidates()),
        spend=view.charge, seed=view.task.seed, minibatch=view.task.search.minibatch,
    )


def _failures(view: RunView) -> Callable[[int, random.Random], list[Failure]]:
    """A few of a candidate's wrong dev answers, read from the store, as the proposer is shown them."""
    from agentsearch.optimizers._evolve import Failure

    def failures(candidate_id: int, rng: random.Random, count: int = 4) -> list[Failure]:
        wrong = view.wrong_answers(candidate_id)
        chosen = []
        for inputs, prediction, gold, error in rng.sample(wrong, min(count, len(wrong))):
            expected = {k: str(v) for k, v in gold.items()}
            feedback = error or "wrong answer: expected " + "; ".join(f"{k} {v!r}" for k, v in expected.items())
            chosen.append(Failure({k: str(v) for k, v in inputs.items()},
                                  "; ".join(f"{k}: {v}" for k, v in (prediction or {}).items()) or "(none)",
                                  expected, feedback, unparsed=prediction is None))
        return chosen
    return failures


@register("recombine", levels=SPACE_LEVELS)
def _recombine(view: RunView) -> BaseOptimizer:
    from agentsearch.optimizers._recombine import RecombineOptimizer

    assert view.space is not None, "recombine proposes candidates of the run's space"

    return RecombineOptimizer(
        view.space, view.proposer(), population=_population(view),
        known=lambda: {c.spec_hash: c.number for c in view.candidates()},
        asked=lambda: sum(c.optimizer == "recombine" for c in view.candidates()),
        failures=_failures(view), spend=view.charge, seed=view.task.seed, minibatch=view.task.search.minibatch,
        task=view.task.program.instructions, notes=lambda last: view.notes("recombine", last),
        keep_note=lambda text: view.keep_note("recombine", text),
    )


def _design_task(view: RunView) -> DesignTask:
    """What an agent-level optimizer tells its proposer about the task (signature, data, examples, limits)."""
    import dspy

    from agentsearch.optimizers._demo_sets import make_demo_sets
    from agentsearch.optimizers._meta_agent import DesignTask
    from agentsearch.optimizers._proposer import summarize_data
    from agentsearch.search_space import node_signature

    task, settings = view.task, view.task.search.agent
    train = view.train
    signature = node_signature(task.program.signature, "answer")
    outputs = list(dspy.Signature(signature).output_fields)
    label_of = {item.id: "\x1f".join(str(item.example[name]) for name in outputs) for item in train}
    shown = make_demo_sets([], [item.id for item in train], num_sets=1, size=settings.examples,
                           rng=random.Random(task.seed), label_of=label_of)
    by_id = {item.id: item for item in train}
    examples = tuple(dict(by_id[example_id].example.items()) for example_id in (shown[0] if shown else ()))
    return DesignTask(signature=signature, instructions=task.program.instructions,
                      summary=summarize_data(train, outputs), examples=examples, limits=view.limits)


@register("meta_agent", levels=(Level.AGENT,))
def _meta_agent(view: RunView) -> BaseOptimizer:
    from agentsearch.optimizers._meta_agent import ArchiveEntry, MetaAgentOptimizer
    from agentsearch.search_space import DesignSpec, parse_spec

    settings = view.task.search.agent

    def describe(inputs: dict, prediction: dict | None, gold: dict, error: str | None) -> str:
        shown_inputs = ", ".join(f"{k}={v!r}" for k, v in inputs.items())
        expected = ", ".join(f"{k}={v!r}" for k, v in gold.items())
        got = f"error {error}" if error else f"answered {prediction}"
        return f"{shown_inputs}: {got}; expected {expected}"[:400]

    def archive() -> list[ArchiveEntry]:
        entries = []
        for candidate in view.candidates(levels=(Level.AGENT,)):
            score = view.dev_score(candidate.id)
            if score is None:
                continue
            failures = tuple(describe(*wrong) for wrong in view.wrong_answers(candidate.id)[:3])
            spec = parse_spec(candidate.spec)
            assert isinstance(spec, DesignSpec)
            entries.append(ArchiveEntry(candidate.id, spec, score, view.program_calls(candidate.id), failures))
        return entries

    return MetaAgentOptimizer(
        task=_design_task(view), proposer=view.proposer(), archive=archive,
        known=lambda: {c.spec_hash for c in view.candidates(levels=(Level.AGENT,))},
        spend=view.charge, seed_candidate_id=view.seed_candidate_id, show_code=settings.show_code,
        repairs=settings.repairs,
    )


@register("mcts", levels=(Level.AGENT,))
def _mcts(view: RunView) -> BaseOptimizer:
    from agentsearch.optimizers._mcts import MCTSOptimizer, TreeNode
    from agentsearch.search_space import DesignSpec, parse_spec
    from agentsearch.store import CandidateStatus

    settings = view.task.search.agent

    def tree() -> list[TreeNode]:
        designs = view.candidates(levels=(Level.AGENT,))
        ids = {c.id for c in designs}
        nodes = []
        for candidate in designs:
            spec = parse_spec(candidate.spec)
            assert isinstance(spec, DesignSpec)
            parent = candidate.parents[0] if candidate.parents and candidate.parents[0] in ids else None
            score = view.dev_score(candidate.id)
            failed = candidate.status == CandidateStatus.FAILED
            nodes.append(TreeNode(candidate.id, candidate.number, parent, spec, score,
                                  error=(candidate.note or "failed") if failed else None,
                                  calls=view.program_calls(candidate.id) if score is not None else 0.0))
        return nodes

    return MCTSOptimizer(
        _design_task(view), view.proposer(), tree=tree,
        known=lambda: {c.spec_hash for c in view.candidates(levels=(Level.AGENT,))},
        spend=view.charge, seed_candidate_id=view.seed_candidate_id, seed=view.task.seed,
        top_k=settings.top_k, patience=settings.patience,
    )
