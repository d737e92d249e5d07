from __future__ import annotations

import pytest

import agentsearch
from agentsearch import SearchCallback, load_task
from agentsearch.exceptions import AgentSearchError
from agentsearch.store import get_storage


def test_search_beats_the_seed_and_reports_test_once(write_task, sqlite_url, fake_lm):
    result = agentsearch.optimize(write_task(), storage=sqlite_url)
    assert result.run.status == "finished"
    assert result.seed.dev_score == pytest.approx(0.5)
    assert result.best.dev_score > result.seed.dev_score
    assert result.best.test_score is not None and result.best.test_score > 0.5
    assert result.best.candidate.spec["predictors"][0]["format"] == "completion"
    store = get_storage(sqlite_url)
    candidates = store.list_candidates(result.run.id)
    assert len(candidates) == 6 and len({c.spec_hash for c in candidates}) == 6
    tested = [e for e in store.list_evaluations(run_id=result.run.id) if e.split == "test"]
    assert {e.candidate_id for e in tested} == {result.best.candidate.id, result.seed.candidate.id}
    # the returned program is runnable and agrees with the stored evaluation
    prediction = result.best_program(sentence="a wonderful film 7")
    assert prediction.label == "positive"
    assert all(c.parents == (result.seed.candidate.id,) for c in candidates[1:])


def test_optimize_accepts_a_task_object_and_random_optimizer(write_task, sqlite_url, fake_lm):
    task = load_task(write_task(**{"search.optimizer": "random", "search.max_candidates": 3}))
    result = agentsearch.optimize(task, storage=sqlite_url)
    assert len(get_storage(sqlite_url).list_candidates(result.run.id)) == 3
    assert result.best.candidate.optimizer in {"random", "seed"}


class _Crash(Exception):
    pass


class _CrashAfter(SearchCallback):
    def __init__(self, examples: int) -> None:
        self.left = examples

    def on_example(self, outcome, usage) -> None:
        self.left -= 1
        if self.left == 0:
            raise _Crash()


@pytest.mark.parametrize("crash_after", [5, 30, 61])
def test_resume_after_a_crash_repeats_no_finished_evaluation(write_task, tmp_path, fake_lm, crash_after):
    path = write_task()
    uninterrupted = agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'a.db'}", run_name="a")
    calls_uninterrupted = fake_lm.calls

    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # only the store may save calls now
    fake_lm.calls = 0
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(_Crash):
        agentsearch.optimize(path, storage=url, run_name="b", callback=_CrashAfter(crash_after))
    assert get_storage(url).get_run("b").status == "failed"
    resumed = agentsearch.optimize(path, storage=url, resume=True)
    assert resumed.run.name == "b" and resumed.run.status == "finished"
    # with the LM cache off, every repeated evaluation would show here; the one more call is the resumed
    # process's preflight check of the LM, and at most the calls of two examples at concurrency 1: the
    # one in flight at the crash and the one that finished while the crashing caller held its batch
    # (the worker runs up to one example ahead of the caller)
    store = get_storage(f"sqlite:///{tmp_path / 'a.db'}")
    one_example = max(r.program_calls for e in store.list_evaluations(run_id=uninterrupted.run.id)
                      for r in store.list_example_results(e.id))
    assert calls_uninterrupted + 1 <= fake_lm.calls <= calls_uninterrupted + 1 + 2 * one_example
    assert resumed.usage.lm_calls == uninterrupted.usage.lm_calls + 1  # the budget counts that call too
    assert len(get_storage(url).list_candidates(resumed.run.id)) == 6


def test_budget_stops_cleanly_and_resume_with_more_budget_finishes(write_task, sqlite_url, fake_lm):
    path = write_task(**{"budget.max_lm_calls": 40})
    stopped = agentsearch.optimize(path, storage=sqlite_url, run_name="r")
    assert stopped.run.status == "stopped" and "max_lm_calls=40" in stopped.stop_reason
    assert 40 <= stopped.usage.lm_calls <= 41
    assert stopped.best.test_score is None  # no test evaluation past the budget
    # the budget binds the search, not the program it returns: that one answers (it used to carry
    # the run's spent call gate, and every call of it was refused)
    calls = fake_lm.calls
    assert stopped.best_program(sentence="a great film").label in ("positive", "negative")
    assert fake_lm.calls == calls + 1
    store = get_storage(sqlite_url)
    assert len(store.list_candidates(stopped.run.id)) < 6
    finished = agentsearch.optimize(path, storage=sqlite_url, run_name="r", max_lm_calls=10_000)
    assert finished.run.status == "finished" and len(store.list_candidates(finished.run.id)) == 6


def test_wall_time_budget_before_the_seed_is_scored(write_task, sqlite_url, fake_lm):
    with pytest.raises(AgentSearchError, match="max_wall_s=0.001"):
        agentsearch.optimize(write_task(**{"budget.max_wall_s": 0.001}), storage=sqlite_url, run_name="w")
    run = get_storage(sqlite_url).get_run("w")
    assert run.status == "stopped" and "max_wall_s" in run.stop_reason


def test_resume_without_unfinished_run_is_an_error(write_task, sqlite_url, fake_lm):
    with pytest.raises(AgentSearchError, match="no unfinished run"):
        agentsearch.optimize(write_task(), storage=sqlite_url, resume=True)


def test_finished_run_rerun_by_name_spends_nothing(write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.max_candidates": 3})
    first = agentsearch.optimize(path, storage=sqlite_url, run_name="same")
    calls = fake_lm.calls
    again = agentsearch.optimize(path, storage=sqlite_url, run_name="same")
    assert fake_lm.calls == calls
    assert again.best.candidate.id == first.best.candidate.id and again.usage == first.usage


def test_optuna_study_lives_in_the_same_database(write_task, sqlite_url, fake_lm):
    import optuna

    result = agentsearch.optimize(write_task(), storage=sqlite_url, run_name="study")
    study = optuna.load_study(study_name="agentsearch:study", storage=sqlite_url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(complete) + len(pruned) >= 6  # the seed, five candidates, and any duplicates told their known score
    assert max(t.value for t in complete) == result.best.dev_score


def test_search_and_resume_on_postgresql(write_task, postgres_url, fake_lm):
    import optuna

    path = write_task(**{"budget.max_lm_calls": 50})
    stopped = agentsearch.optimize(path, storage=postgres_url, run_name="pg")
    assert stopped.run.status == "stopped"
    finished = agentsearch.optimize(path, storage=postgres_url, resume=True, max_lm_calls=10_000)
    assert finished.run.name == "pg" and finished.run.status == "finished"
    assert finished.best.dev_score > finished.seed.dev_score
    study = optuna.load_study(study_name="agentsearch:pg", storage=postgres_url)
    assert max(t.value for t in study.trials if t.value is not None) == finished.best.dev_score


def test_runs_started_in_the_same_second_get_distinct_names(write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.max_candidates": 1})
    names = {agentsearch.optimize(path, storage=sqlite_url).run.name for _ in range(3)}
    assert len(names) == 3


def test_continuing_a_run_with_a_changed_task_is_refused(write_task, sqlite_url, fake_lm):
    agentsearch.optimize(write_task(**{"search.max_candidates": 2}), storage=sqlite_url, run_name="fixed")
    changed = write_task("changed.yaml", **{"search.max_candidates": 2, "search.max_demos": 2})
    with pytest.raises(AgentSearchError, match="task field search.max_demos differs"):
        agentsearch.optimize(changed, storage=sqlite_url, run_name="fixed")
    more = write_task("more.yaml", **{"search.max_candidates": 3, "budget.max_lm_calls": 999})
    assert len(get_storage(sqlite_url).list_candidates(
        agentsearch.optimize(more, storage=sqlite_url, run_name="fixed").run.id)) == 3


def test_result_reports_bootstrap_intervals_and_paired_gain_over_seed(write_task, sqlite_url, fake_lm):
    result = agentsearch.optimize(write_task(), storage=sqlite_url)
    dev = result.intervals["best_dev"]
    assert dev.mean == pytest.approx(result.best.dev_score) and dev.low <= dev.mean <= dev.high and dev.n == 12
    gain = result.intervals["best_minus_seed_dev"]
    assert gain.mean == pytest.approx(result.best.dev_score - result.seed.dev_score)
    assert "best_test" in result.intervals and "best_minus_seed_test" in result.intervals


def test_a_seed_whose_every_dev_answer_fails_bootstraps_nothing(task_dir, write_task, sqlite_url, fake_lm):
    from tests.conftest import sentiment_rows, write_jsonl

    write_jsonl(task_dir / "data" / "dev.jsonl",
                [{**row, "sentence": f"TOOLONG {row['sentence']}"} for row in sentiment_rows(100)[:6]])
    phases = []

    class Phases(SearchCallback):
        def on_phase(self, message: str) -> None:
            phases.append(message)

    result = agentsearch.optimize(write_task(**{"search.max_candidates": 3}), storage=sqlite_url, callback=Phases())
    splits = {e.split for e in get_storage(sqlite_url).list_evaluations(run_id=result.run.id)}
    assert "train" not in splits and result.seed.dev_score == 0.0
    assert any("no bootstrapping" in phase for phase in phases)
    assert len(get_storage(sqlite_url).list_candidates(result.run.id)) == 3  # the search went on without demos
