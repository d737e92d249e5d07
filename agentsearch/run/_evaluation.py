"""Scoring a candidate on a split: each example stored as it finishes, dev in growing minibatches
when the optimizer prunes, and an LM outage never stored as a score.

An evaluation continues whatever is stored: a resumed run, or a worker that takes over a dead
worker's candidate, scores only the examples not yet stored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from agentsearch.data import LabelledExample
from agentsearch.evaluators import ExampleOutcome
from agentsearch.exceptions import LMUnavailableError
from agentsearch.lm import _failures
from agentsearch.lm._failures import FailureKind
from agentsearch.optimizers import BaseOptimizer, Proposal
from agentsearch.run._context import RunContext
from agentsearch.search_space import Program, build_program, parse_spec
from agentsearch.store import CandidateRecord, EvaluationRecord, Split

MAX_UNSCORED_STREAK = 5
"""Examples in a row an LM outage leaves unscored before the run stops (status failed, resumable)."""
UNSCORED_PASSES = 3
"""Passes over an evaluation's unscored examples (each call already retried) before the run stops."""


def proposal_of(candidate: CandidateRecord, repairs: int = 0) -> Proposal:
    """The proposal a stored candidate came from, as its optimizer is told about it."""
    return Proposal(parse_spec(candidate.spec), candidate.parents, candidate.trial_number,
                    origin=candidate.optimizer, counts=candidate.optimizer != "repair", repairs=repairs)


class _Outage:
    """Watches outcomes for an LM outage: a failure that cannot heal, or too many unscored in a row.
    A call the budget refused is no outage: the budget stops the run."""

    def __init__(self) -> None:
        self.streak = 0
        self.last: Any = None
        self.tripped = False

    def observe(self, outcomes: Sequence[ExampleOutcome]) -> None:
        for outcome in outcomes:
            if outcome.failure is None or outcome.failure.kind is FailureKind.BUDGET:
                self.streak = 0
                continue
            self.streak += 1
            self.last = outcome.failure
            if not outcome.failure.kind.retryable or self.streak >= MAX_UNSCORED_STREAK:
                self.tripped = True

    def error(self, unscored: int) -> LMUnavailableError:
        return LMUnavailableError(self.last, unscored=unscored)


class Scoring:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.best_dev: float | None = None

    def _minibatches(self, examples: Sequence[LabelledExample], done: set[str],
                     offset: int = 0) -> list[list[LabelledExample]]:
        """The examples not yet scored, from ``offset`` on (wrapping), cut where pruning is checked:
        after 1, 3, 7, ... minibatches."""
        offset %= max(len(examples), 1)
        examples = [*examples[offset:], *examples[:offset]]
        batches, start, size = [], 0, self.ctx.task.search.minibatch
        while start < len(examples):
            batch = [item for item in examples[start:start + size] if item.id not in done]
            if batch:
                batches.append(batch)
            start, size = start + size, size * 2
        return batches

    def evaluate(self, candidate: CandidateRecord, split: str, examples: Sequence[LabelledExample],
                 optimizer: BaseOptimizer | None = None, proposal: Proposal | None = None) -> EvaluationRecord:
        """Score the candidate on the examples not yet stored.

        The record stays 'running' if a budget cut it short. With an optimizer that prunes, dev is
        scored in growing minibatches and the evaluation ends 'pruned' when the optimizer says so.
        An LM outage stores nothing for the examples it hit and raises LMUnavailableError once it
        persists; a metric that raises stops the run with MetricError.
        """
        ctx = self.ctx
        storage = ctx.storage
        evaluation = storage.get_or_create_evaluation(candidate.id, split)
        if evaluation.status.finished:
            return evaluation
        done = {result.example_id: result.score for result in storage.list_example_results(evaluation.id)}
        todo = [item for item in examples if item.id not in done]
        ctx.callback.on_evaluation_start(candidate, split, len(examples), len(examples) - len(todo))
        proposal = proposal or proposal_of(candidate)
        program = build_program(proposal.spec, ctx.demos, ctx.lm, base_dir=ctx.task.base_dir, limits=ctx.limits,
                                repeats=ctx.task.search.agent.repeats)
        pruner = optimizer if optimizer is not None and optimizer.prunes and split == Split.DEV else None
        batches = self._minibatches(examples, set(done), pruner.minibatch_offset(proposal)) if pruner else [todo]
        started = time.perf_counter()
        for batch in batches:
            finished = self._score(program, evaluation, batch, done, split)
            if pruner:  # all stored scores: those a crash kept from being reported are reported now
                pruner.report(proposal, {ctx.dev_step[example_id]: score for example_id, score in done.items()})
            if not finished:
                ctx.stop_reason = ctx.budget.exhausted()
                return evaluation
            if pruner and len(done) < len(examples) and pruner.should_prune(proposal):
                mean = sum(done.values()) / len(done)
                reason = f"pruned after {len(done)} of {len(examples)} dev examples: score {mean:.3f}, {pruner.prune_reason}"
                evaluation = storage.complete_evaluation(evaluation.id, time.perf_counter() - started,
                                                         pruned_because=reason)
                ctx.callback.on_evaluation_end(candidate, evaluation, self.best_dev)
                return evaluation
        evaluation = storage.complete_evaluation(evaluation.id, time.perf_counter() - started)
        if split == Split.DEV and evaluation.score is not None:
            self.best_dev = evaluation.score if self.best_dev is None else max(self.best_dev, evaluation.score)
        ctx.callback.on_evaluation_end(candidate, evaluation, self.best_dev)
        return evaluation

    def _score(self, program: Program, evaluation: EvaluationRecord, batch: Sequence[LabelledExample],
               done: dict[str, float], split: str) -> bool:
        """Score and store the batch's examples; False when a budget stopped it first.

        Examples an LM outage left unscored get up to UNSCORED_PASSES passes (their calls were
        already retried); an outage that outlasts them, or MAX_UNSCORED_STREAK unscored examples
        in a row, or a failure that cannot heal (a bad key), raises LMUnavailableError.
        """
        ctx = self.ctx
        budget, storage = ctx.budget, ctx.storage
        outage = _Outage()
        for number in range(UNSCORED_PASSES):
            if number and outage.last is not None:  # give the provider a moment before the next pass
                ctx.cancelled.wait(_failures.backoff_s(number + 1, outage.last))
            todo = [item for item in batch if item.id not in done]
            if not todo:
                return True
            outage = _Outage()
            runs = ctx.evaluator.run(program, todo, account=self._spend,
                                     should_stop=lambda: outage.tripped or budget.exhausted() is not None)
            with contextlib.closing(runs):
                for outcomes in runs:
                    scored = [outcome for outcome in outcomes if outcome.scored]
                    storage.add_example_results(evaluation.id, scored)
                    for outcome in scored:
                        done[outcome.example_id] = outcome.score
                        ctx.callback.on_example(outcome, budget.as_usage())
                    lost = [outcome for outcome in outcomes if outcome.failure is not None]
                    if lost:
                        storage.add_unscored_usage(ctx.run.id, sum(o.usage.lm_calls for o in lost),
                                                   sum(o.usage.tokens for o in lost))
                    error = ctx.evaluator.unscored_error((o for o in outcomes if o.metric_error), split)
                    if error is not None:  # a task error stops the run; an outage is the Outage's to judge
                        raise error
                    outage.observe(outcomes)
            if outage.tripped:
                raise outage.error(len([item for item in batch if item.id not in done]))
            if budget.exhausted() is not None:
                return all(item.id in done for item in batch)
            if outage.last is not None and any(item.id not in done for item in batch):
                ctx.callback.on_phase(f"{sum(item.id not in done for item in batch)} examples left unscored by "
                                      f"the LM ({outage.last.describe()}); trying them again")
        missing = [item for item in batch if item.id not in done]
        if missing:
            raise outage.error(len(missing))
        return True

    def _spend(self, outcomes: list[ExampleOutcome]) -> None:
        for outcome in outcomes:
            self.ctx.budget.spend(outcome.usage)
