"""The one loop that drives every level: ask, gate, evaluate, tell, for every outcome.

A run is a list of stages (``plan``): the prompt and module levels through the task's optimizer,
then the agent level through the meta agent. Each stage has a cumulative quota of counted
candidates, which the store hands out atomically, so workers sharing a run stop at exactly
``max_candidates``. Each step of a stage first claims a pending candidate nobody holds (one a dead
worker or a killed process left: finished where it stopped, told to the optimizer through its trial
number), else asks the optimizer for a proposal. A duplicate of a known candidate is told with that
candidate's score (the store creates a spec once per run, so workers racing to one proposal evaluate
it once); a design that fails its smoke test is told with the error (the meta agent
repairs it next); a scored or pruned candidate is told its score. With ``search.holdout``, the
calls re-scoring the current finalists will need are held back from the budget after every
candidate (``selection_reserve``), so the search stops where they are still left.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentsearch._report import cost_per_example
from agentsearch.exceptions import BudgetRefusal
from agentsearch.optimizers import BaseOptimizer, Outcome, Proposal
from agentsearch.run._context import RunContext
from agentsearch.run._evaluation import Scoring, proposal_of
from agentsearch.run._result import selection_reserve
from agentsearch.run._view import StoreView
from agentsearch.search_space import level_of
from agentsearch.store import (
    CandidateRecord,
    CandidateStatus,
    DuplicateCandidate,
    EvaluationRecord,
    EvaluationStatus,
    Level,
    Split,
)
from agentsearch.store._base import CANDIDATE_LEASE
from agentsearch.task import Task

MAX_DUPLICATE_STREAK = 50


@dataclass(frozen=True)
class Stage:
    optimizer: str
    levels: tuple[Level, ...]
    """Levels its candidates have (a stage claims pending candidates of these levels only)."""
    limit: int
    """Counted candidates of the run (the seed included) once this stage is done."""
    smoke_test: bool = False
    """Run each new candidate on a few train examples first (agent designs): one that fails on all
    of them is not scored on dev; its optimizer is told the error."""
    exhausted: str = "search space exhausted ({count} proposals in a row were already evaluated)"


def plan(task: Task) -> list[Stage]:
    search = task.search
    stages = []
    if search.space_levels:
        stages.append(Stage(search.optimizer, (Level.PROMPT, Level.MODULE), search.space_candidates))
    if "agent" in search.levels:
        stages.append(Stage(search.agent.optimizer, (Level.AGENT,), search.max_candidates, smoke_test=True,
                            exhausted=f"the {search.agent.optimizer} optimizer repeated known designs "
                                      "{count} times in a row"))
    return stages


class Loop:
    def __init__(self, ctx: RunContext, scoring: Scoring, view: StoreView) -> None:
        self.ctx, self.scoring, self.view = ctx, scoring, view
        self.exhausted: set[Stage] = set()
        """Stages whose optimizer kept repeating known candidates: no more asks this worker."""

    def outcome(self, candidate_id: int, evaluation: EvaluationRecord | None, *, duplicate: bool = False) -> Outcome:
        if evaluation is None or not evaluation.status.finished:
            return Outcome(candidate_id, None, duplicate=duplicate)
        return Outcome(candidate_id, evaluation.score, cost=cost_per_example(evaluation, self.ctx.cost_measure),
                       pruned=evaluation.status == EvaluationStatus.PRUNED, duplicate=duplicate)

    def run_stage(self, stage: Stage, optimizer: BaseOptimizer) -> bool:
        """Work the stage until its quota is counted and nothing of it is left to claim; False when a
        budget stopped it (``ctx.stop_reason`` says which)."""
        ctx, storage, view = self.ctx, self.ctx.storage, self.view
        duplicates = 0
        ctx.budget.hold(selection_reserve(ctx))
        while True:
            ctx.stop_reason = ctx.budget.exhausted()
            if ctx.stop_reason:
                return False
            candidate = storage.claim_candidate(ctx.run.id, ctx.holder, ctx.lease_s, levels=stage.levels)
            if candidate is not None:  # left by a killed process or a dead worker: finish it
                proposal = proposal_of(candidate, self._repairs_before(candidate))
                view.add(candidate)
            else:
                run = storage.get_run(ctx.run.id)
                done = run is None or run.counted_candidates >= stage.limit or stage in self.exhausted
                if not done and (reason := optimizer.finished()) is not None:
                    ctx.end_note = reason
                    self.exhausted.add(stage)
                    done = True
                if done and not optimizer.owes_proposal:
                    return True
                try:
                    proposal = optimizer.ask()
                except BudgetRefusal:  # the proposer's call found the budget spent: a stop, not a failure
                    ctx.stop_reason = ctx.budget.exhausted() or "budget used up"
                    return False
                twin = view.known(proposal.spec.hash)
                if twin is None:
                    try:
                        candidate = storage.create_candidate(
                            ctx.run.id, proposal.spec.model_dump(mode="json"), proposal.spec.hash,
                            level=level_of(proposal.spec), optimizer=proposal.origin or optimizer.name,
                            parents=proposal.parents, trial_number=proposal.trial_number, limit=stage.limit,
                            counted=proposal.counts, holder=ctx.holder, lease_s=ctx.lease_s, unique=True)
                    except DuplicateCandidate as found:  # another worker created it since this one last looked
                        twin = found.twin
                        view.add(twin)
                if twin is not None:
                    optimizer.tell(proposal, self.outcome(twin.id, view.dev_evaluation(twin.id), duplicate=True))
                    duplicates += 1
                    if duplicates >= MAX_DUPLICATE_STREAK:
                        ctx.end_note = stage.exhausted.format(count=duplicates)
                        self.exhausted.add(stage)  # asked no more; what is pending is still finished
                        return True
                    continue
                duplicates = 0
                if candidate is None:  # another worker counted the last one first
                    optimizer.tell(proposal, Outcome(None, None, error="max_candidates reached"))
                    return True
                view.add(candidate)
            if not self.evaluate(stage, optimizer, candidate, proposal):
                return False

    def evaluate(self, stage: Stage, optimizer: BaseOptimizer, candidate: CandidateRecord, proposal: Proposal) -> bool:
        ctx, storage = self.ctx, self.ctx.storage
        if stage.smoke_test:
            error = self._smoke_test(candidate)
            ctx.stop_reason = ctx.budget.exhausted()
            if ctx.stop_reason:
                self._release(candidate)
                return False
            if error is not None:
                storage.set_candidate_status(candidate.id, CandidateStatus.FAILED, note=error)
                optimizer.tell(proposal, Outcome(candidate.id, None, error=error))
                if optimizer.owes_proposal:
                    ctx.callback.on_phase(f"repairing design #{candidate.number} "
                                          f"({proposal.repairs + 1} of {ctx.task.search.agent.repairs})")
                return True
        evaluation = self.scoring.evaluate(candidate, Split.DEV, ctx.split(Split.DEV), optimizer, proposal)
        if not evaluation.status.finished:
            self._release(candidate)
            return False
        status = CandidateStatus.PRUNED if evaluation.status == EvaluationStatus.PRUNED else CandidateStatus.COMPLETE
        storage.set_candidate_status(candidate.id, status)
        if status == CandidateStatus.COMPLETE:  # it may be a finalist now
            ctx.budget.hold(selection_reserve(ctx))
        self.view.add(candidate, evaluation)
        optimizer.tell(proposal, self.outcome(candidate.id, evaluation))
        return True

    def _release(self, candidate: CandidateRecord) -> None:
        """A candidate this worker stops on (a budget) goes back for a resumed run or another worker."""
        self.ctx.storage.release_lease(self.ctx.run.id, f"{CANDIDATE_LEASE}{candidate.id}", self.ctx.holder)

    def _smoke_test(self, candidate: CandidateRecord) -> str | None:
        """The error of a design that fails on every one of the first train examples, else None."""
        ctx = self.ctx
        examples = ctx.split(Split.TRAIN)[:ctx.task.search.agent.smoke_examples]
        evaluation = self.scoring.evaluate(candidate, Split.TRAIN, examples)
        results = ctx.storage.list_example_results(evaluation.id)
        errors = [r.error for r in results if r.error]
        if evaluation.status == EvaluationStatus.COMPLETE and results and len(errors) == len(results):
            return errors[0]
        return None

    def _repairs_before(self, candidate: CandidateRecord) -> int:
        """How many repairs led to this design (its chain of ``repair`` ancestors)."""
        count = 0
        while candidate.optimizer == "repair" and candidate.parents:
            count += 1
            parent = self.ctx.storage.get_candidate(candidate.parents[0])
            if parent is None:
                break
            candidate = parent
        return count
