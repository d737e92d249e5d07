"""Choosing the best without being fooled by dev noise: with ``search.holdout``, train examples are
kept out of demos and proposals, the top ``finalists`` by dev are re-scored on them before the test
phase, and the choice is the finalist best on dev and held-out examples together."""

from __future__ import annotations

import datetime as dt

import agentsearch
from agentsearch._report import best_candidate
from agentsearch.store import (
    CandidateRecord,
    CandidateStatus,
    EvaluationRecord,
    EvaluationStatus,
    Level,
    get_storage,
)


def test_finalists_are_rescored_on_held_out_train_examples_and_the_choice_pools_them(write_task, sqlite_url,
                                                                                     fake_lm):
    task = write_task(**{"search.holdout": 8, "search.finalists": 3, "search.max_candidates": 8})
    result = agentsearch.optimize(task, storage=sqlite_url, run_name="held")
    store = get_storage(sqlite_url)
    run = store.get_run("held")
    evaluations = store.list_evaluations(run_id=run.id)
    held = [e for e in evaluations if e.split == "select"]
    dev = {e.candidate_id: e for e in evaluations if e.split == "dev"}
    # the top three by dev, each on the same 8 held-out examples
    number = {c.id: c.number for c in store.list_candidates(run.id)}
    top = sorted((e for e in dev.values() if e.status == "complete"), key=lambda e: (-e.score, number[e.candidate_id]))
    assert sorted(e.candidate_id for e in held) == sorted(e.candidate_id for e in top[:3])
    assert all(e.n == 8 and e.status == "complete" for e in held)
    held_ids = {r.example_id for e in held for r in store.list_example_results(e.id)}
    assert len(held_ids) == 8
    # none of them was a demo or went into the seed's bootstrapping on train
    demo_ids = set(run.space["demos"])  # a built program's demos are keyed by their example ids
    assert demo_ids and not demo_ids & held_ids
    trained = {r.example_id for e in evaluations if e.split == "train" for r in store.list_example_results(e.id)}
    assert trained and not trained & held_ids
    # the choice: the finalist whose dev and held-out examples together score highest
    pooled = {e.candidate_id: (dev[e.candidate_id].score * dev[e.candidate_id].n + e.score * e.n)
              / (dev[e.candidate_id].n + e.n) for e in held}
    assert result.best.candidate.id == max(pooled, key=lambda cid: (pooled[cid], dev[cid].score, -number[cid]))
    assert best_candidate(store, run.id)[0].id == result.best.candidate.id  # the CLI and the report agree
    # the re-scoring happened before the test phase, and its calls are booked like any others
    assert min(e.created_at for e in held) <= min(e.created_at for e in evaluations if e.split == "test")
    assert fake_lm.calls == store.run_usage(run.id).lm_calls


class _Store:
    """Just the two listings ``best_candidate`` reads."""

    def __init__(self, candidates, evaluations):
        self.candidates, self.evaluations = candidates, evaluations

    def list_candidates(self, run_id):
        return self.candidates

    def list_evaluations(self, run_id):
        return self.evaluations


def _candidate(cid: int) -> CandidateRecord:
    now = dt.datetime(2026, 1, 1)
    return CandidateRecord(id=cid, run_id=1, number=cid, spec={}, spec_hash=str(cid), level=Level.PROMPT,
                           optimizer="tpe", parents=(), trial_number=None, status=CandidateStatus.COMPLETE, note=None,
                           created_at=now, finished_at=now)


def _evaluation(eid: int, cid: int, split: str, score: float, n: int) -> EvaluationRecord:
    now = dt.datetime(2026, 1, 1)
    return EvaluationRecord(id=eid, candidate_id=cid, split=split, status=EvaluationStatus.COMPLETE, score=score, n=n,
                            n_errors=0, lm_calls=n, tokens=0, cost_usd=0.0, wall_s=0.0, note=None, created_at=now,
                            finished_at=now)


def test_a_candidate_lucky_on_dev_gives_way_to_one_that_holds_up():
    candidates = [_candidate(1), _candidate(2), _candidate(3)]
    dev = [_evaluation(1, 1, "dev", 0.90, 20), _evaluation(2, 2, "dev", 0.85, 20), _evaluation(3, 3, "dev", 0.5, 20)]
    # without held-out scores: the highest dev mean
    assert best_candidate(_Store(candidates, dev), 1)[0].id == 1
    # held out: 1 drops to 0.60 on 40 unseen examples, 2 keeps 0.85: pooled 0.70 against 0.85
    held = [_evaluation(4, 1, "select", 0.60, 40), _evaluation(5, 2, "select", 0.85, 40)]
    assert best_candidate(_Store(candidates, dev + held), 1)[0].id == 2
    # one finalist re-scored is no comparison: dev decides
    assert best_candidate(_Store(candidates, dev + held[:1]), 1)[0].id == 1


def test_a_call_budget_keeps_what_rescoring_the_finalists_needs(write_task, sqlite_url, fake_lm):
    """A search that would spend the whole ``max_lm_calls`` stops early enough for the three finalists
    to be re-scored on all 8 held-out examples (before, the budget ran out in the search and the
    choice fell back to dev alone)."""
    task = write_task(**{"search.holdout": 8, "search.finalists": 3, "search.max_candidates": 200,
                         "budget.max_lm_calls": 130})
    result = agentsearch.optimize(task, storage=sqlite_url, run_name="reserved")
    store = get_storage(sqlite_url)
    run = store.get_run("reserved")
    assert run.status == "stopped" and "max_lm_calls=130" in run.stop_reason
    evaluations = store.list_evaluations(run_id=run.id)
    held = [e for e in evaluations if e.split == "select"]
    assert len(held) == 3 and all(e.status == "complete" and e.n == 8 for e in held)
    dev = [e for e in evaluations if e.split == "dev"]
    assert len(dev) >= 4  # the search ran: the seed and at least three candidates
    assert fake_lm.calls == store.run_usage(run.id).lm_calls <= 130
    assert result.best.candidate.id in {e.candidate_id for e in held}
