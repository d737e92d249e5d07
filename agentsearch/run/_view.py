"""The run as optimizers see it, kept up to date by reading only what changed.

A shared store across machines pays a network round trip per read, so the view never lists the
whole run again: it reads candidates numbered above the last it saw, re-reads the evaluations of
candidates it knows to be unfinished (at most the candidates in flight), and reads a finished
evaluation's per-example results once (finished evaluations never change).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agentsearch.exceptions import AgentSearchError
from agentsearch.lm import Usage
from agentsearch.optimizers import RunView
from agentsearch.run._context import RunContext
from agentsearch.store import (
    CandidateRecord,
    EvaluationRecord,
    ExampleResultRecord,
    RunStatus,
    Split,
)

REFRESH_S = 0.5
"""The view reads the store at most this often unless the loop says it changed something itself."""
WAIT_POLL_S = 0.2
MAX_WAIT_POLL_S = 2.0


class StoreView(RunView):
    def __init__(self, ctx: RunContext, seed_candidate_id: int) -> None:
        self.ctx = ctx
        self.task = ctx.task
        self.space = None
        self.seed_candidate_id = seed_candidate_id
        self.worker = ctx.worker
        self.storage_url = ctx.storage.url
        self.run_name = ctx.run.name
        self.train = ctx.split(Split.TRAIN)
        self.limits = ctx.limits
        self._candidates: dict[int, CandidateRecord] = {}
        self._last_number = -1
        self._dev: dict[int, EvaluationRecord] = {}
        """Finished dev evaluations by candidate id."""
        self._results: dict[int, list[ExampleResultRecord]] = {}
        self._by_hash: dict[str, CandidateRecord] = {}
        self._read_at = float("-inf")
        self._examples = {item.id: item for item in ctx.split(Split.DEV)}

    # keeping up --------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._read_at < REFRESH_S:
            return
        storage, run_id = self.ctx.storage, self.ctx.run.id
        for candidate in storage.list_candidates(run_id, after_number=self._last_number):
            self._learn(candidate)
            self._last_number = max(self._last_number, candidate.number)
        open_ids = [cid for cid, c in self._candidates.items()
                    if not c.status.ended or (c.status != "failed" and cid not in self._dev)]
        if open_ids:
            for candidate in storage.list_candidates(run_id, ids=open_ids):
                self._learn(candidate)
            for evaluation in storage.list_evaluations(candidate_ids=open_ids):
                if evaluation.split == Split.DEV and evaluation.status.finished:
                    self._dev[evaluation.candidate_id] = evaluation
        self._read_at = time.monotonic()

    def _learn(self, candidate: CandidateRecord) -> None:
        self._candidates[candidate.id] = candidate
        self._by_hash.setdefault(candidate.spec_hash, candidate)

    def add(self, candidate: CandidateRecord, evaluation: EvaluationRecord | None = None) -> None:
        """What this worker itself created or finished: known without a read."""
        self._learn(candidate)
        if evaluation is not None and evaluation.split == Split.DEV and evaluation.status.finished:
            self._dev[candidate.id] = evaluation

    def known(self, spec_hash: str) -> CandidateRecord | None:
        self.refresh()
        return self._by_hash.get(spec_hash)

    # RunView -------------------------------------------------------------------------------------
    def candidates(self, *, levels: tuple[str, ...] | None = None) -> list[CandidateRecord]:
        self.refresh()
        found = sorted(self._candidates.values(), key=lambda c: c.number)
        return found if levels is None else [c for c in found if c.level in levels]

    def dev_evaluation(self, candidate_id: int) -> EvaluationRecord | None:
        if candidate_id not in self._dev:
            self.refresh()
        return self._dev.get(candidate_id)

    def _complete_results(self, candidate_id: int) -> list[ExampleResultRecord] | None:
        evaluation = self.dev_evaluation(candidate_id)
        if evaluation is None or evaluation.status != "complete":
            return None
        if candidate_id not in self._results:
            self._results[candidate_id] = self.ctx.storage.list_example_results(evaluation.id)
        return self._results[candidate_id]

    def dev_scores(self, candidate_id: int) -> dict[int, float] | None:
        results = self._complete_results(candidate_id)
        if results is None:
            return None
        step = self.ctx.dev_step
        return {step[r.example_id]: r.score for r in results if r.example_id in step}

    def wrong_answers(self, candidate_id: int) -> list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any],
                                                              str | None]]:
        wrong = []
        for result in self._complete_results(candidate_id) or []:
            item = self._examples.get(result.example_id)
            if result.score < 1.0 and item is not None:
                wrong.append((dict(item.example.inputs().items()), result.prediction,
                              dict(item.example.labels().items()), result.error))
        return wrong

    def program_calls(self, candidate_id: int) -> float:
        results = self._complete_results(candidate_id) or []
        return sum(r.program_calls for r in results) / max(len(results), 1)

    def charge(self, usage: Usage) -> None:
        self.ctx.charge(usage)

    def proposer(self) -> Any:
        return self.ctx.proposer()

    def mark_trial(self, candidate_id: int, trial_number: int) -> None:
        self.ctx.storage.set_candidate_trial(candidate_id, trial_number)

    def notes(self, source: str, last: int) -> list[str]:
        return self.ctx.storage.list_run_notes(self.ctx.run.id, source, last=last)

    def keep_note(self, source: str, text: str) -> None:
        self.ctx.storage.add_run_note(self.ctx.run.id, source, text)

    def once(self, name: str) -> bool:
        return self.ctx.storage.acquire_lease(self.ctx.run.id, name, self.ctx.holder, self.ctx.lease_s)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        wait_for(self.ctx, condition, what)


class Backoff:
    """The pauses of a worker polling the store for another's work: growing from WAIT_POLL_S to
    MAX_WAIT_POLL_S, so many idle workers do not keep the store busy."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.delay = ctx, WAIT_POLL_S

    def pause(self) -> bool:
        """Wait the next pause; False when this worker is being stopped meanwhile."""
        self.delay = min(self.delay * 1.5, MAX_WAIT_POLL_S)
        return not self.ctx.cancelled.wait(self.delay)


def wait_for(ctx: RunContext, condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition()`` holds; stop waiting when this worker is stopped or the run ends."""
    ctx.callback.on_phase(f"waiting for another worker: {what}")
    backoff = Backoff(ctx)
    while not condition():
        if not backoff.pause():
            raise AgentSearchError(f"stopped while waiting for {what}")
        run = ctx.storage.get_run(ctx.run.id)
        if run is None or run.status not in (RunStatus.RUNNING,):
            if condition():
                return
            raise AgentSearchError(f"run {ctx.run.name} ended ({run.status if run else 'deleted'}) while this "
                                   f"worker waited for {what}")
