"""What a run's records say: the best candidate, score intervals, the score/cost front, pruning savings.

Computed from the store alone, so the CLI and SQL users see the same figures as ``optimize``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentsearch._stats import Estimate, bootstrap, paired_difference
from agentsearch.store import BaseStorage, CandidateRecord, EvaluationRecord


def finalists(storage: BaseStorage, run_id: int, count: int | None = None) -> list[tuple[CandidateRecord, EvaluationRecord]]:
    """The ``count`` (default: all) candidates with the highest dev scores over complete evaluations,
    best first; ties go to the earlier candidate (the seed wins a tie)."""
    candidates = {c.id: c for c in storage.list_candidates(run_id)}
    scored = [e for e in storage.list_evaluations(run_id=run_id)
              if e.split == "dev" and e.status == "complete" and e.score is not None]
    scored.sort(key=lambda e: (-(e.score or 0.0), candidates[e.candidate_id].number))
    return [(candidates[e.candidate_id], e) for e in scored[:count]]


def best_candidate(storage: BaseStorage, run_id: int) -> tuple[CandidateRecord, EvaluationRecord] | None:
    """The run's choice, read from the store alone (so ``optimize``, the CLI and the report agree).

    Without held-out evaluations: the highest dev score (ties to the earlier candidate). With the
    finalists re-scored on held-out train examples (``search.holdout``): the finalist whose dev and
    held-out examples together score highest: twice or more the examples behind the choice, half
    of them never seen while the search chose between candidates, so a candidate lucky on dev
    gives way to one that holds up."""
    ranked = finalists(storage, run_id)
    if not ranked:
        return None
    held = {e.candidate_id: e for e in storage.list_evaluations(run_id=run_id)
            if e.split == "select" and e.status == "complete" and e.score is not None}
    rescored = [(candidate, dev) for candidate, dev in ranked if candidate.id in held]
    if len(rescored) < 2:
        return ranked[0]

    def pooled(pair: tuple[CandidateRecord, EvaluationRecord]) -> float:
        candidate, dev = pair
        other = held[candidate.id]
        return ((dev.score or 0.0) * dev.n + (other.score or 0.0) * other.n) / max(1, dev.n + other.n)

    return max(rescored, key=lambda pair: (pooled(pair), pair[1].score or 0.0, -pair[0].number))


def cost_per_example(evaluation: EvaluationRecord, measure: str) -> float:
    """Dollars per example when the LM has a known price (``usd``), else tokens per example."""
    total = evaluation.cost_usd if measure == "usd" else evaluation.tokens
    return total / max(1, evaluation.n)


@dataclass(frozen=True)
class FrontPoint:
    candidate: CandidateRecord
    dev: EvaluationRecord
    cost: float

    @property
    def score(self) -> float:
        assert self.dev.score is not None  # only scored evaluations become points
        return self.dev.score


def pareto_front(candidates: Sequence[CandidateRecord], evaluations: Sequence[EvaluationRecord],
                 measure: str, *, cost_of: Callable[[EvaluationRecord], float] | None = None) -> list[FrontPoint]:
    """Candidates no other beats on dev score without costing more per example, cheapest first.

    Takes a run's records rather than a storage: the caller has listed them already (the cost unit
    is read from the same evaluations). ``cost_of`` replaces the cost per example (``measure``)."""
    by_id = {c.id: c for c in candidates}
    cost = cost_of or (lambda e: cost_per_example(e, measure))
    points = [FrontPoint(by_id[e.candidate_id], e, cost(e)) for e in evaluations
              if e.split == "dev" and e.status == "complete" and e.score is not None]
    points.sort(key=lambda p: (p.cost, -p.score, p.candidate.number))
    # One sweep from the cheapest: a point is dominated by a cheaper one scoring as well, or by one
    # of its own cost scoring better; points equal in both stay together.
    front: list[FrontPoint] = []
    best_cheaper = float("-inf")
    for _, same_cost in itertools.groupby(points, key=lambda p: p.cost):
        group = list(same_cost)
        top = group[0].score
        if top > best_cheaper:
            front.extend(p for p in group if p.score == top)
            best_cheaper = top
    return front


@dataclass(frozen=True)
class PruningSummary:
    pruned: int
    """Dev evaluations stopped early."""
    lm_calls_spent: int
    """LM calls the pruned evaluations made."""
    lm_calls_saved: int
    """Estimated: each pruned candidate's calls per example times the dev examples it skipped."""


def pruning_summary(storage: BaseStorage, run_id: int) -> PruningSummary:
    dev = [e for e in storage.list_evaluations(run_id=run_id) if e.split == "dev"]
    full = max((e.n for e in dev if e.status == "complete"), default=0)
    pruned = [e for e in dev if e.status == "pruned"]
    saved = sum(round(e.lm_calls / max(1, e.n) * max(0, full - e.n)) for e in pruned)
    return PruningSummary(len(pruned), sum(e.lm_calls for e in pruned), saved)


@dataclass(frozen=True)
class CandidateResult:
    candidate: CandidateRecord
    dev: EvaluationRecord | None
    test: EvaluationRecord | None

    @property
    def dev_score(self) -> float | None:
        return self.dev.score if self.dev else None

    @property
    def test_score(self) -> float | None:
        return self.test.score if self.test and self.test.status == "complete" else None


def score_intervals(storage: BaseStorage, best: CandidateResult, seed: CandidateResult) -> dict[str, Estimate]:
    """Bootstrap 95% intervals of the best's dev and test scores, and paired differences against the seed."""
    def per_example(evaluation: EvaluationRecord | None) -> dict[str, float] | None:
        if evaluation is None or evaluation.status != "complete":
            return None
        return {result.example_id: result.score for result in storage.list_example_results(evaluation.id)}

    intervals: dict[str, Estimate] = {}
    for split in ("dev", "test"):
        best_scores = per_example(getattr(best, split))
        if not best_scores:
            continue
        intervals[f"best_{split}"] = bootstrap(list(best_scores.values()))
        seed_scores = per_example(getattr(seed, split))
        if seed_scores and best.candidate.id != seed.candidate.id:
            intervals[f"best_minus_seed_{split}"] = paired_difference(best_scores, seed_scores)
    return intervals


def score_text(value: float | None) -> str:
    """A score as every summary shows it: three decimals, ``-`` for none."""
    return "-" if value is None else f"{value:.3f}"
