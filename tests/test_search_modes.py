"""Early stopping (pruning), the cost-aware multi-objective mode, and splits cut from one data file."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import optuna
import pytest

import agentsearch
import agentsearch._report
from agentsearch._report import pareto_front
from agentsearch.exceptions import TaskSpecError
from agentsearch.store import get_storage
from tests.conftest import sentiment_rows, write_jsonl
from tests.test_cli import run_cli


@pytest.fixture
def big_dev(task_dir):
    """Enough dev examples for the pruner to see a significant difference (40)."""
    rows = [row for offset in (300, 400) for row in sentiment_rows(offset)]
    write_jsonl(task_dir / "data" / "dev.jsonl", rows)


def test_weak_candidates_are_pruned_and_record_why(write_task, sqlite_url, fake_lm, big_dev):
    path = write_task(**{"search.max_candidates": 10, "search.minibatch": 8})
    result = agentsearch.optimize(path, storage=sqlite_url)
    store = get_storage(sqlite_url)
    pruned = [e for e in store.list_evaluations(run_id=result.run.id) if e.status == "pruned"]
    assert pruned, "chance-level candidates should be stopped early once the best is clearly better"
    for evaluation in pruned:
        assert evaluation.n < 40 and "Wilcoxon" in evaluation.note
        assert store.get_candidate(evaluation.candidate_id).status == "pruned"
        assert len(store.list_example_results(evaluation.id)) == evaluation.n  # the partial results are kept
    assert result.pruning.pruned == len(pruned)
    assert result.pruning.lm_calls_saved > 0
    # a pruned candidate is never the best, and its trial is PRUNED in the study
    assert result.best.candidate.id not in {e.candidate_id for e in pruned}
    study = optuna.load_study(study_name=f"agentsearch:{result.run.name}", storage=sqlite_url)
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == len(pruned)


def test_without_a_pruner_every_candidate_is_scored_on_all_of_dev(write_task, sqlite_url, fake_lm, big_dev):
    path = write_task(**{"search.max_candidates": 10, "search.pruner": "none"})
    result = agentsearch.optimize(path, storage=sqlite_url)
    dev = [e for e in get_storage(sqlite_url).list_evaluations(run_id=result.run.id) if e.split == "dev"]
    assert {e.status for e in dev} == {"complete"} and {e.n for e in dev} == {40}
    assert result.pruning.pruned == 0


def test_cost_aware_search_lists_the_pareto_front(write_task, sqlite_url, fake_lm, monkeypatch, capsys):
    path = write_task(**{"search.objectives": ["score", "cost"], "search.levels": ["prompt", "module"],
                         "search.max_candidates": 12})
    result = agentsearch.optimize(path, storage=sqlite_url, run_name="mo")
    study = optuna.load_study(study_name="agentsearch:mo", storage=sqlite_url)
    assert len(study.directions) == 2
    store = get_storage(sqlite_url)
    assert not [e for e in store.list_evaluations(run_id=result.run.id) if e.status == "pruned"]
    front = pareto_front(store.list_candidates(result.run.id), store.list_evaluations(run_id=result.run.id), "tokens")
    points = [(p.dev.score, p.cost) for p in front]
    assert points == sorted(points, key=lambda p: p[1]) and len(front) >= 1
    # each point is undominated: along the front, more cost buys more score
    assert all(later[0] > earlier[0] for earlier, later in zip(points, points[1:]))
    code, out, _ = run_cli(monkeypatch, capsys, "candidates", "mo", "--pareto", "--json", "--storage", sqlite_url)
    assert code == 0
    rows = json.loads(out)
    assert [row["id"] for row in rows] == [p.candidate.id for p in front]
    # a lift whose nodes all ran before is answered by DSPy's cache and costs the search nothing (README)
    assert all(row["cost_unit"] == "tokens" for row in rows)
    assert [row["tokens_per_example"] for row in rows] == pytest.approx([p.cost for p in front])


def test_splits_cut_from_one_file_are_disjoint_and_stable(task_dir, write_task, sqlite_url, fake_lm):
    write_jsonl(task_dir / "data" / "all.jsonl", [row for o in (0, 100, 200) for row in sentiment_rows(o)])
    path = write_task(**{"data": {"file": "data/all.jsonl", "split": {"train": 20, "dev": 16, "test": 12}}})
    task = agentsearch.load_task(path)
    from agentsearch.data import load_split

    ids = {split: [item.id for item in load_split(task, split)] for split in ("train", "dev", "test")}
    assert [len(ids[s]) for s in ("train", "dev", "test")] == [20, 16, 12]
    assert not set(ids["train"]) & set(ids["dev"]) and not set(ids["dev"]) & set(ids["test"])
    assert ids == {split: [item.id for item in load_split(task, split)] for split in ids}
    assert agentsearch.optimize(path, storage=sqlite_url, max_candidates=2).best.test.n == 12


def test_split_sizes_beyond_the_file_are_refused(task_dir, write_task):
    write_jsonl(task_dir / "data" / "all.jsonl", sentiment_rows(0))
    path = write_task(**{"data": {"file": "data/all.jsonl", "split": {"train": 10, "dev": 10, "test": 10}}})
    with pytest.raises(TaskSpecError, match="data.split: 30 examples asked for"):
        agentsearch.load_task(path)


@pytest.mark.parametrize(("override", "message"), [
    ({"search.modules": {"kinds": ["react"]}}, "search.modules.kinds: react needs at least one tool"),
    ({"search.modules": {"kinds": ["react"], "tools": ["tests.toolbox:nope"]}}, "search.modules.tools: "),
    ({"search.objectives": ["cost"]}, "objectives"),
    ({"search.levels": ["module", "module"]}, "levels"),
])
def test_bad_module_settings_name_the_field(write_task, override, message, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "validate", str(write_task(**override)))
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_validate_prints_the_space_size(write_task, monkeypatch, capsys):
    task = write_task(**{"search.levels": ["prompt", "module"]})
    plan = json.loads(run_cli(monkeypatch, capsys, "validate", str(task), "--json")[1])
    assert plan["space_size"] > 10**6 and "debate" in plan["topologies"]
    assert plan["prompt_stage_trials"] == 3  # half of 6 candidates
    prompt_only = json.loads(run_cli(monkeypatch, capsys, "validate", str(write_task()), "--json")[1])
    # 2 formats x 3 instructions x (1 + 3 demo sets x 4 demo counts)
    assert prompt_only["space_size"] == 2 * 3 * (1 + 3 * 4) and prompt_only["prompt_stage_trials"] == 0


@pytest.mark.parametrize("optimizer", ["tpe", "recombine"])
def test_module_search_with_pruning_resumes_to_the_same_run(write_task, tmp_path, fake_lm, big_dev, optimizer):
    import dspy

    from tests.test_optimize import _Crash, _CrashAfter

    path = write_task(**{"search.levels": ["prompt", "module"], "search.max_candidates": 8,
                         "search.modules": {"max_samples": 2}, "search.optimizer": optimizer})
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every repeated call would count

    def proposer_prompts() -> list[str]:
        return [p for p in fake_lm.prompts if p.startswith(("You design programs", "You are improving one module"))]

    uninterrupted = agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'a.db'}", run_name="a")
    calls, asked = fake_lm.calls, proposer_prompts()
    fake_lm.calls = 0
    fake_lm.prompts.clear()
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(_Crash):
        agentsearch.optimize(path, storage=url, run_name="b", callback=_CrashAfter(150 if optimizer == "tpe" else 120))
    before = len(proposer_prompts())
    resumed = agentsearch.optimize(path, storage=url, resume=True)
    # the resumed process's proposer is shown what the uninterrupted one was, notes on earlier drafts included
    # (recombine keeps them in the store)
    assert proposer_prompts() == asked and (optimizer != "recombine" or 0 < before < len(asked))
    # ... its first prompt after the crash included: notes the crashed process kept
    assert optimizer != "recombine" or "Notes on your earlier proposals" in asked[before]
    # the resumed process's preflight call, and the calls of the two examples the crash lost at concurrency
    # 1 (one in flight, one finished while the caller held its batch): nothing stored is evaluated twice
    store = get_storage(f"sqlite:///{tmp_path / 'a.db'}")
    one_example = max(r.program_calls for e in store.list_evaluations(run_id=uninterrupted.run.id)
                      for r in store.list_example_results(e.id))
    assert calls + 1 <= fake_lm.calls <= calls + 1 + 2 * one_example

    def hashes(url, run):
        return [c.spec_hash for c in get_storage(url).list_candidates(run.id)]

    assert hashes(url, resumed.run) == hashes(f"sqlite:///{tmp_path / 'a.db'}", uninterrupted.run)
    assert resumed.pruning == uninterrupted.pruning


def test_pareto_front_sweep_matches_the_definition(monkeypatch):
    """Against the definition, brute force, on random points with many ties in score and cost."""
    rng = random.Random(0)
    for _ in range(50):
        scores = {i: rng.choice([0.0, 0.5, 0.8, 1.0]) for i in range(rng.randint(1, 30))}
        costs = {i: float(rng.randint(1, 6)) for i in scores}
        candidates = [SimpleNamespace(id=i, number=i) for i in scores]
        evaluations = [SimpleNamespace(candidate_id=i, split="dev", status="complete", score=score)
                       for i, score in scores.items()]
        monkeypatch.setattr(agentsearch._report, "cost_per_example",
                            lambda evaluation, measure, costs=costs: costs[evaluation.candidate_id])
        front = {p.candidate.number for p in pareto_front(candidates, evaluations, "tokens")}
        assert front == {i for i in scores if not any(
            scores[j] >= scores[i] and costs[j] <= costs[i] and (scores[j], costs[j]) != (scores[i], costs[i])
            for j in scores)}
