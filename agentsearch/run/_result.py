"""The end of a run: one worker evaluates the best and the seed program on test, once; every
worker returns the same result, read from the store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentsearch._report import (
    CandidateResult,
    PruningSummary,
    best_candidate,
    finalists,
    pruning_summary,
    score_intervals,
    score_text,
)
from agentsearch._stats import Estimate
from agentsearch.exceptions import AgentSearchError
from agentsearch.lm import build_lm, redact_tree
from agentsearch.run._context import RunContext
from agentsearch.run._evaluation import Scoring
from agentsearch.run._view import Backoff
from agentsearch.search_space import Program, build_program, parse_spec, save_program
from agentsearch.store import (
    CandidateRecord,
    EvaluationRecord,
    RunRecord,
    RunStatus,
    RunUsage,
    Split,
)
from agentsearch.task import Task

if TYPE_CHECKING:
    from rich.table import Table

FINISH_LEASE = "finish"


@dataclass(frozen=True, repr=False)
class OptimizeResult:
    run: RunRecord
    seed: CandidateResult
    best: CandidateResult
    best_program: Program
    usage: RunUsage
    wall_s: float
    task: Task
    intervals: dict[str, Estimate]
    """Bootstrap 95% intervals: ``best_dev``, ``best_test``, and ``best_minus_seed_dev``/``_test`` (paired)."""
    pruning: PruningSummary

    @property
    def stop_reason(self) -> str | None:
        return self.run.stop_reason

    def summary_parts(self) -> list[str | Table]:
        """The summary as the CLI prints it: lines, and the seed/best table (a rich Table)."""
        from rich.table import Table

        from agentsearch._stats import verdict

        score = score_text
        parts: list[str | Table] = [f"run {self.run.name}: {self.run.status} ({self.stop_reason})"]
        table = Table()
        for column in ("", "candidate", "dev", "test"):
            table.add_column(column)
        for label, result in (("seed", self.seed), ("best", self.best)):
            table.add_row(label, f"#{result.candidate.number} (id {result.candidate.id})", score(result.dev_score),
                          score(result.test_score))
        parts.append(table)
        for key, label in (("best_dev", "best dev"), ("best_test", "best test"),
                           ("best_minus_seed_dev", "best - seed, dev"), ("best_minus_seed_test", "best - seed, test")):
            if key in self.intervals:
                estimate, sign = self.intervals[key], "+" if "minus" in key else ""
                claim = f": {verdict(estimate)}" if "minus" in key else ""
                parts.append(f"{label}: {estimate.mean:{sign}.3f} (95% CI {estimate.low:{sign}.3f} to "
                             f"{estimate.high:{sign}.3f}, {estimate.n} examples){claim}")
        parts.append(f"LM calls {self.usage.lm_calls}, tokens {self.usage.tokens}, cost ${self.usage.cost_usd:.4f}, "
                     f"wall {self.wall_s:.1f} s")
        if self.pruning.pruned:
            parts.append(f"pruned {self.pruning.pruned} candidates early: {self.pruning.lm_calls_spent} LM calls spent "
                         f"on them, about {self.pruning.lm_calls_saved} saved against scoring them on all of dev")
        return parts

    def summary(self, width: int = 80) -> str:
        """The run's outcome as the CLI prints it after a search: status, the seed and the best program's
        dev and test scores, 95% intervals with what they allow one to claim, calls, tokens, cost."""
        import io

        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, color_system=None, highlight=False)
        for part in self.summary_parts():
            if isinstance(part, str):
                console.print(part, markup=False)
            else:
                console.print(part)
        return buffer.getvalue().rstrip("\n")

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        score = score_text
        return (f"OptimizeResult(run={self.run.name!r}, status={str(self.run.status.value)!r}, best=#{self.best.candidate.number} "
                f"dev {score(self.best.dev_score)} test {score(self.best.test_score)}, seed dev "
                f"{score(self.seed.dev_score)}, lm_calls={self.usage.lm_calls})")

    def save(self, path: str | Path) -> Path:
        """Write the best program as a self-contained JSON file (``agentsearch.load_program`` reads it);
        credentials in the LM's URL are masked, as everywhere agentsearch writes."""
        return save_program(self.best_program, path, lm=redact_tree(self.task.lm.model_dump(mode="json")),
                            metadata=program_metadata(self.run, self.best))


def program_metadata(run: RunRecord, result: CandidateResult) -> dict[str, Any]:
    return {"run": run.name, "task": run.task_name, "candidate_id": result.candidate.id,
            "candidate_number": result.candidate.number, "dev_score": result.dev_score, "test_score": result.test_score}


def _best(ctx: RunContext) -> tuple[CandidateRecord, EvaluationRecord]:
    found = best_candidate(ctx.storage, ctx.run.id)
    if found is None:
        raise AgentSearchError(f"run {ctx.run.name} has no candidate with a dev score")
    return found


def _test(ctx: RunContext, scoring: Scoring, candidate: CandidateRecord) -> EvaluationRecord | None:
    if (ctx.task.data_path(Split.TEST) is None and Split.TEST not in ctx.splits) or ctx.budget.exhausted():
        return None
    return scoring.evaluate(candidate, Split.TEST, ctx.split(Split.TEST))


def selection_reserve(ctx: RunContext) -> int:
    """The LM calls re-scoring the finalists on the held-out examples will take, as the run stands:
    for each of the current top ``search.finalists`` by dev, the calls its program made per dev example
    (cache hits included: held-out examples are new to it) times the held-out examples. 0 without
    ``search.holdout`` or while fewer than two candidates are scored (nothing to choose between yet:
    the set-up and the first candidates spend freely)."""
    search = ctx.task.search
    held_out = ctx.split(Split.SELECT) if search.holdout else []
    if not held_out:
        return 0
    top = finalists(ctx.storage, ctx.run.id, search.finalists)
    if len(top) < 2:
        return 0
    reserve = 0
    for _, evaluation in top:
        rows = ctx.storage.list_example_results(evaluation.id)
        reserve += math.ceil(max(1.0, sum(row.program_calls for row in rows) / max(1, len(rows))) * len(held_out))
    return reserve


def _rescore_finalists(ctx: RunContext, scoring: Scoring) -> None:
    """Score the top ``search.finalists`` candidates by dev on the held-out train examples, which no
    demo or proposal came from; ``best_candidate`` then chooses on dev and those together. A budget
    that runs out here leaves the choice to what was re-scored (to dev alone if fewer than two)."""
    search = ctx.task.search
    if not search.holdout or not ctx.split(Split.SELECT):
        return
    top = finalists(ctx.storage, ctx.run.id, search.finalists)
    if len(top) < 2:
        return
    ctx.callback.on_phase(f"re-scoring the top {len(top)} candidates on {len(ctx.split(Split.SELECT))} held-out "
                          "train examples")
    for candidate, _ in top:
        if ctx.budget.exhausted():
            return
        scoring.evaluate(candidate, Split.SELECT, ctx.split(Split.SELECT))


def finish(ctx: RunContext, scoring: Scoring, seed: CandidateRecord, status: RunStatus, reason: str) -> None:
    """Test the best and the seed, and set the run's final status: done by the one worker holding the
    ``finish`` lease; the others wait until it has (or take over if it dies)."""
    storage, run_id = ctx.storage, ctx.run.id
    while True:
        if storage.acquire_lease(run_id, FINISH_LEASE, ctx.holder, ctx.lease_s):
            run = storage.get_run(run_id)
            if run is not None and run.status != RunStatus.RUNNING:
                return  # another worker finished it while this one took the lease
            ctx.budget.release_hold()
            _rescore_finalists(ctx, scoring)
            best, _ = _best(ctx)
            ctx.callback.on_phase("evaluating the best and the seed program on test")
            _test(ctx, scoring, best)
            if seed.id != best.id:
                _test(ctx, scoring, seed)
            spent = ctx.budget.exhausted()
            if spent and status == RunStatus.FINISHED:
                status, reason = RunStatus.STOPPED, spent
            storage.set_run_status(run_id, status, reason)
            return
        ctx.callback.on_phase("waiting for another worker to evaluate the best program on test")
        backoff = Backoff(ctx)
        while True:
            run = storage.get_run(run_id)
            if run is None or run.status != RunStatus.RUNNING:
                return
            if storage.lease_holder(run_id, FINISH_LEASE) is None:
                break
            if not backoff.pause():
                raise AgentSearchError("stopped while waiting for the test evaluation")


def result(ctx: RunContext, seed: CandidateRecord, *, wall_s: float) -> OptimizeResult:
    """What the store says of the run: the best by dev score, both programs' test scores, intervals."""
    storage, run_id = ctx.storage, ctx.run.id
    best, best_dev = _best(ctx)
    evaluations = {(e.candidate_id, e.split): e for e in storage.list_evaluations(run_id=run_id)}
    seed = storage.get_candidate(seed.id) or seed
    best_result = CandidateResult(best, best_dev, evaluations.get((best.id, Split.TEST)))
    seed_result = CandidateResult(seed, evaluations.get((seed.id, Split.DEV)), evaluations.get((seed.id, Split.TEST)))
    run = storage.get_run(run_id)
    assert run is not None
    return OptimizeResult(
        run=run, seed=seed_result, best=best_result,
        # its own LM, free of the run's call gate and stop signal: the budget bound the search, and the
        # run is over; the task's LM is a default, as for a loaded program (a configured LM wins)
        best_program=build_program(parse_spec(best.spec), ctx.demos, build_lm(ctx.task.lm), base_dir=ctx.task.base_dir,
                                   limits=ctx.limits, pin_lm=False),
        usage=storage.run_usage(run_id), wall_s=wall_s, task=ctx.task,
        intervals=score_intervals(storage, best_result, seed_result), pruning=pruning_summary(storage, run_id),
    )
