"""Your own DSPy program searched from a task file (``program.module``): its named predictors get
searched instructions and demos from the program's own traces; what is scored is a copy of your
class, and the best one saves and loads with plain DSPy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import agentsearch
from agentsearch.search_space import build_program, parse_spec
from agentsearch.store import get_storage
from tests.fakes import same_prompts
from tests.test_cli import run_cli

HERE = Path(__file__).parent


@pytest.fixture
def program_task(write_task, task_dir):
    """A task whose program is ``my_pipeline:build``, a module beside the task file."""
    shutil.copy(HERE / "user_programs.py", task_dir / "my_pipeline.py")

    def write(**overrides):
        return write_task(**{"program.module": "my_pipeline:build", "search.levels": ["prompt"],
                             "search.formats": ["chat"], "search.max_candidates": 8, **overrides})
    return write


def test_a_task_naming_its_program_searches_each_predictors_instructions_and_demos(program_task, sqlite_url, fake_lm):
    result = agentsearch.optimize(program_task(), storage=sqlite_url)
    store = get_storage(sqlite_url)
    run = store.get_run(result.run.id)
    space = run.space["program"]
    assert space["reference"] == "my_pipeline:build" and [n["name"] for n in space["nodes"]] == ["extract", "classify"]
    # instructions proposed for each predictor from what it read and wrote in the program's traces
    assert all(len(node["instructions"]) > 1 for node in space["nodes"])
    # demos from the same passing traces: each demo of one predictor has its twin for the other
    extract_demos = {key.split(":", 1)[1] for key in run.space["demos"] if key.startswith("extract:")}
    classify_demos = {key.split(":", 1)[1] for key in run.space["demos"] if key.startswith("classify:")}
    assert extract_demos and extract_demos == classify_demos
    assert {"sentence", "key_phrase"} <= set(run.space["demos"][f"extract:{min(extract_demos)}"])
    assert {"sentence", "key_phrase", "label"} <= set(run.space["demos"][f"classify:{min(extract_demos)}"])

    specs = [parse_spec(c.spec) for c in store.list_candidates(run.id)]
    assert all(spec.topology == "program" and spec.program == "my_pipeline:build" for spec in specs)
    seed = specs[0]
    assert all(node.demo_ids == () for node in seed.predictors)  # the seed is the program as written
    changed = {node.name for spec in specs[1:] for node, first in zip(spec.predictors, seed.predictors, strict=True)
               if node.instructions != first.instructions}
    with_demos = {node.name for spec in specs[1:] for node in spec.predictors if node.demo_ids}
    assert changed == with_demos == {"extract", "classify"}
    for spec in specs:  # one demo set for the whole program: both predictors' demos come from the same traces
        ids = [tuple(d.split(":", 1)[1] for d in node.demo_ids) for node in spec.predictors]
        assert ids[0] == ids[1]

    # what is scored is a configured copy of the user's class; the best is returned the same way
    best = result.best_program
    assert type(best.program).__name__ == "KeyThenLabel" and best.program.extract is not None
    # no call the program made went unbooked
    assert fake_lm.calls == store.run_usage(run.id).lm_calls


def test_the_best_program_saves_and_loads_with_plain_dspy_to_identical_predictions(program_task, sqlite_url,
                                                                                    fake_lm, tmp_path):
    result = agentsearch.optimize(program_task(), storage=sqlite_url)
    candidate = max((c for c in get_storage(sqlite_url).list_candidates(result.run.id)),
                    key=lambda c: sum(len(n["demo_ids"]) for n in c.spec["predictors"] if "demo_ids" in n))
    configured = build_program(parse_spec(candidate.spec), result.run.space["demos"], None,
                               base_dir=program_task().parent).program
    assert any(p.demos for _, p in configured.named_predictors())
    path = tmp_path / "mine.json"
    configured.save(str(path))
    from my_pipeline import KeyThenLabel  # the user's own class, fresh

    fresh = KeyThenLabel()
    fresh.load(str(path))
    for (name, loaded), (_, original) in zip(fresh.named_predictors(), configured.named_predictors(), strict=True):
        assert loaded.signature.instructions == original.signature.instructions, name
        assert [dict(d) for d in loaded.demos] == [dict(d) for d in original.demos], name
    same_prompts(configured, fresh, [{"key_phrase": "great acting"}, {"label": "positive"}] * 3,
                 ["great acting", "a dull plot", "fine"])


@pytest.mark.parametrize(("reference", "message"), [
    ("my_pipeline:nope", "has no function 'nope'"),
    ("absent_module:build", "cannot import 'absent_module'"),
    ("my_pipeline:not_a_module", "returned int, not a dspy.Module"),
    ("my_pipeline:no_predictors", "returned a Empty with no predictors to search"),
])
def test_a_program_reference_that_cannot_give_a_program_is_one_line_exit_2(program_task, reference, message,
                                                                            sqlite_url, monkeypatch, capsys):
    task = program_task(**{"program.module": reference})
    code, out, err = run_cli(monkeypatch, capsys, "optimize", str(task), "--storage", sqlite_url)
    assert code == 2 and "program.module:" in err and message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # nothing written


def test_a_program_task_asking_for_the_agent_level_is_refused(program_task, sqlite_url, monkeypatch, capsys):
    task = program_task(**{"search.levels": ["prompt", "agent"]})
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(task))
    assert code == 2 and "program.module" in err and "drop agent from search.levels" in err


def test_an_lm_outage_while_bootstrapping_stops_the_run_instead_of_leaving_no_demos(program_task, task_dir,
                                                                                  sqlite_url, fake_lm):
    """The program's traces on train are scored by the run's evaluator: an outage there is raised
    (the run fails, resumable), never taken for examples the program got wrong."""
    from agentsearch.exceptions import LMUnavailableError
    from tests.conftest import sentiment_rows, write_jsonl

    write_jsonl(task_dir / "data" / "train.jsonl",
                [{**row, "sentence": f"EXPLODE {row['sentence']}"} for row in sentiment_rows(0)])
    with pytest.raises(LMUnavailableError):
        agentsearch.optimize(program_task(), storage=sqlite_url, run_name="outage")
    run = get_storage(sqlite_url).get_run("outage")
    assert run.status == "failed" and run.space is None
